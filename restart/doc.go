// Package restart adds hot restart to a drainhttp.Server: Envoy's parent
// shutdown sequence for a Go process, on SIGHUP, with no connection refused
// and no request lost. It also takes listening sockets from systemd socket
// activation.
//
// During an upgrade two processes run: the old one (the parent) and the new
// one (the child), which it started by re-executing its own binary with the
// same arguments. The listening sockets are shared, not re-bound: the child
// inherits their file descriptors (github.com/cloudflare/tableflip), so no
// connection is refused and no "address already in use" can happen. In
// order:
//
//  1. SIGHUP (or Restarter.Upgrade): the parent starts the child and keeps
//     serving.
//  2. The child gets its listeners (Restarter.Listen), starts serving them
//     and, once every one is being accepted on, reports ready
//     (Restarter.Ready, which Restarter.ServeUntilSignal calls then): it
//     writes the PID file and tells the parent. A child that fails before
//     that (a certificate that does not load, a crash, a hang) costs
//     nothing: the parent goes on serving, killing it after UpgradeTimeout
//     if need be.
//  3. The parent stops accepting on every listener it handed over: from now
//     on only the child accepts; connections waiting in the kernel's accept
//     queue are the child's too. The parent drains its existing connections
//     exactly as drainhttp.Server.Drain does
//     (drainhttp.Server.DrainAfterHandoff: the drain window, its decisions
//     and proactive drain, then each connection's DrainTimeout deadline),
//     and exits once no connection remains (no new one can come: this may
//     be before the end of the window), or when ParentShutdownTime has
//     passed at the latest, closing what is left.
//
// SIGTERM and SIGINT drain the process as drainhttp.Server.ServeUntilSignal
// does, a second one hurrying the drain.
//
// Envoy: the new process's hot restart, drainListeners in the parent, and
// startParentShutdownSequence's --parent-shutdown-time-s timer, which here
// the parent runs itself from the moment the child is ready. Envoy's parent
// always lives until that timer; this one leaves as soon as it has drained.
//
// Sockets from systemd socket activation (github.com/coreos/go-systemd's
// activation package reads LISTEN_FDS) are used by Listen when their address
// matches, and handed over on upgrade like the others. systemd keeps them
// after the service exits, for its next start, so Listen marks them with
// drainhttp.SharedListener: a drain closes them without attaching the
// socket filter with which it otherwise stops new connections, since that
// filter would outlive the process and shut the next one out.
// examples/systemd has the units: PIDFile= names the serving process, and
// ExecReload=/bin/kill -HUP $MAINPID upgrades it.
//
// The package uses only drainhttp's exported API. It depends on
// github.com/cloudflare/tableflip and github.com/coreos/go-systemd/v22.
// It works on Linux and other Unix systems, not on Windows, where New
// returns an error wrapping ErrUnavailable; tableflip allows one Restarter
// per process.
package restart
