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
//
// While every event of the burst only changed endpoints (the cheap push of
// endpoints.go), the quiet window is EndpointQuiet instead: those pushes
// cost a map copy per proxy and one small response per stream, so waiting
// for more of them saves little and delays the most frequent change.
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
		endpointsOnly := true
		deadline := func() time.Duration {
			quiet := s.debounce.Quiet
			if endpointsOnly = endpointsOnly && s.endpointsOnly(); endpointsOnly {
				quiet = s.debounce.EndpointQuiet
			}
			d := time.Now().Add(quiet)
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

// endpointsOnly reports whether the pending world differs from the last
// pushed one in endpoints only (the check planEndpointPush makes first,
// without building anything).
func (s *Server) endpointsOnly() bool {
	s.mu.RLock()
	world := s.world
	s.mu.RUnlock()
	return s.endpoints != nil && endpointOnlyChange(s.pushed, world)
}

// pushAll brings every connected proxy to the current world: by replacing
// the changed ClusterLoadAssignments when only endpoints changed
// (endpoints.go), else by rebuilding it. Only the types whose content hash
// changed are sent.
//
// At the end of a full round, the validation memo forgets the resources no
// build of this round used. An endpoint round uses only the replaced
// resources, so it leaves the memo alone unless those have grown it past
// twice its size after the last full round.
func (s *Server) pushAll(changeTime time.Time) {
	s.mu.RLock()
	world, memo := s.world, s.memo
	s.mu.RUnlock()
	plan := s.planEndpointPush(s.pushed, world)
	s.pushed = world
	defer func() {
		if plan != nil && s.memo.len() <= 2*s.memoSize+4096 {
			return
		}
		kept, dropped := s.memo.rotate()
		s.memoSize = kept
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
				if plan != nil && s.pushEndpoints(p, plan, memo, changeTime) {
					continue
				}
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
