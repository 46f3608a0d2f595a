package drainhttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

// ServeUntilSignal runs each serve function in its own goroutine (typically
// s.ListenAndServe, or closures over s.Serve and s.ServeTLS for several
// listeners) until SIGTERM or SIGINT arrives, then runs Drain. A second
// signal during the drain makes it immediate (DrainNow).
//
// It returns nil once the drain is complete and every serve function has
// returned, so that main can exit 0. If a serve function fails first (say,
// its address is in use), ServeUntilSignal closes the server, waits for the
// others and returns that error. If the server is drained or shut down by
// other means (an admin endpoint calling Drain), it waits for that and
// returns nil.
//
// This is the only place the package touches signals, and only when called.
func (s *Server) ServeUntilSignal(serve ...func() error) error {
	if err := s.init(); err != nil {
		return err
	}
	notify := s.notify
	if notify == nil {
		notify = signal.Notify
	}
	sigs := make(chan os.Signal, 2)
	notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)

	errc := make(chan error, len(serve))
	for _, f := range serve {
		go func() { errc <- f() }()
	}
	remaining := len(serve)
	var err error
	select {
	case sig := <-sigs:
		s.log.Info("drainhttp: signal received, draining", "signal", sig.String())
		wait := s.hurryOnSignal(sigs, s.log, nil)
		err = s.Drain(context.Background())
		wait()
	case err = <-errc:
		remaining--
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
			if s.drainStarted.Load() {
				<-s.drained
			}
		} else {
			s.Close()
		}
	}
	for ; remaining > 0; remaining-- {
		if e := <-errc; err == nil && !errors.Is(e, http.ErrServerClosed) {
			err = e
		}
	}
	return err
}

// hurryOnSignal, while s drains, makes the next signal on sigs cut the drain
// short (DrainNow), logging it to log, except signals for which ignore (if
// not nil) returns true. The returned function waits for the watcher, which
// stops when the drain is over.
func (s *Server) hurryOnSignal(sigs <-chan os.Signal, log *slog.Logger, ignore func(os.Signal) bool) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case sig := <-sigs:
				if ignore != nil && ignore(sig) {
					continue
				}
				log.Warn("drainhttp: second signal, draining immediately", "signal", sig.String())
				s.hurryUp()
			case <-s.drained:
				return
			}
		}
	}()
	return func() { <-done }
}

// ListenAndServeUntilSignal is ServeUntilSignal(s.ListenAndServe).
func (s *Server) ListenAndServeUntilSignal() error {
	return s.ServeUntilSignal(s.ListenAndServe)
}
