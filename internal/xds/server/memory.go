package server

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// memoryReturner gives the memory of a burst of large responses back to
// the operating system once the burst is over. The encoded responses of an
// initial sync or a Service added (megabytes per proxy, thousands of
// proxies) are garbage as soon as they are written, but the Go runtime
// returns freed pages gradually, over minutes, so the process would keep a
// peak-sized resident set long after; meshd's steady memory is a fraction
// of it.
type memoryReturner struct {
	bytes atomic.Int64 // large-response bytes since the last return
	last  atomic.Int64 // unix nanoseconds of the last large response
	// release returns memory: debug.FreeOSMemory (tests replace it).
	release func()
}

const (
	// returnAfterBytes of large responses make a burst worth a forced
	// collection.
	returnAfterBytes = 64 << 20
	// returnQuiet without large responses ends a burst.
	returnQuiet = time.Second
)

func newMemoryReturner() *memoryReturner {
	return &memoryReturner{release: debug.FreeOSMemory}
}

// sent records a large response.
func (m *memoryReturner) sent(size int) {
	m.bytes.Add(int64(size))
	m.last.Store(time.Now().UnixNano())
}

// due reports whether a burst is over and large enough to return memory.
func (m *memoryReturner) due(now time.Time) bool {
	return m.bytes.Load() >= returnAfterBytes && now.Sub(time.Unix(0, m.last.Load())) >= returnQuiet
}

// run checks twice a second until ctx ends.
func (m *memoryReturner) run(ctx context.Context) {
	t := time.NewTicker(returnQuiet / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if m.due(now) {
				m.bytes.Store(0)
				m.release()
			}
		}
	}
}
