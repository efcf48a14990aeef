package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryReturner: memory is returned once per burst of large
// responses, after the burst has been quiet for a second; small bursts
// never force it.
func TestMemoryReturner(t *testing.T) {
	var released atomic.Int32
	m := &memoryReturner{release: func() { released.Add(1) }}
	now := time.Now()
	m.sent(returnAfterBytes / 2)
	if m.due(now.Add(2 * returnQuiet)) {
		t.Error("due after a small burst")
	}
	m.sent(returnAfterBytes / 2)
	if m.due(time.Now()) {
		t.Error("due while the burst goes on")
	}
	if !m.due(time.Now().Add(returnQuiet)) {
		t.Error("not due after a large burst went quiet")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * returnQuiet)
	if got := released.Load(); got != 1 {
		t.Errorf("released %d times, want once", got)
	}
}
