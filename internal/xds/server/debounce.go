package server

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// debounceLoop turns change events into push rounds: a round starts when no
// event arrived for Quiet, or Max after the burst's first event, whichever
// comes first. Events arriving during a round start the next window.
func (s *Server) debounceLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-s.changed:
		}
		s.mu.RLock()
		first := s.pendingSince
		s.mu.RUnlock()
		if first.IsZero() {
			continue // the event was taken by the previous round
		}
		hardDeadline := first.Add(s.debounce.Max)
		deadline := func() time.Duration {
			d := time.Now().Add(s.debounce.Quiet)
			if d.After(hardDeadline) {
				d = hardDeadline
			}
			return time.Until(d)
		}
		timer := time.NewTimer(deadline())
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-s.ctx.Done():
				timer.Stop()
				return
			case <-s.changed:
				timer.Reset(deadline())
			case <-timer.C:
				break wait
			}
		}
		s.mu.Lock()
		since := s.pendingSince
		s.pendingSince = time.Time{}
		s.mu.Unlock()
		s.rounds.Add(1)
		s.pushAll(since)
	}
}

// pushAll rebuilds every connected proxy; only the types whose content hash
// changed are re-sent.
//
// Targeted rebuilds go here: with change events that say what changed
// (services, endpoints, workloads), filter the proxies to those whose
// configuration depends on it — an endpoint change affects only proxies that
// can reach its service, and then only their EDS — and let the generator
// rebuild only the affected types. Until then every proxy is regenerated and
// the content hashes keep unchanged types from being re-sent.
//
// At the end of the round, the validation memo forgets the resources no
// build of this round used.
func (s *Server) pushAll(changeTime time.Time) {
	defer func() {
		kept, dropped := s.memo.rotate()
		s.log.V(1).Info("push round done", "memoKept", kept, "memoDropped", dropped)
	}()
	proxies := s.connected()
	if len(proxies) == 0 {
		return
	}
	work := make(chan *proxyState)
	workers := min(runtime.GOMAXPROCS(0), len(proxies))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				s.buildProxy(p, changeTime)
			}
		})
	}
	for _, p := range proxies {
		work <- p
	}
	close(work)
	wg.Wait()
}
