package drainhttp

import (
	"context"
	"errors"
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
// others and returns that error. If the server is drained, shut down or
// closed by other means (an admin endpoint calling Drain, another
// goroutine calling Shutdown), it waits until that has finished (Done)
// and returns nil.
//
// This is the only place the package touches signals, and only when called.
func (s *Server) ServeUntilSignal(serve ...func() error) error {
	if err := s.check(); err != nil {
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
		wait := s.hurryOnSignal(sigs)
		err = s.Drain(context.Background())
		wait()
	case err = <-errc:
		remaining--
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
			<-s.done
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
// short (DrainNow). The returned function waits for the watcher, which
// stops when the drain is over.
func (s *Server) hurryOnSignal(sigs <-chan os.Signal) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case sig := <-sigs:
				s.log.Warn("drainhttp: second signal, draining immediately", "signal", sig.String())
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
