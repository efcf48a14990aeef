// Package listen binds a server's TCP address once, on demand, so that a
// caller can bind early (a port conflict fails start-up, a test learns the
// port of ":0") and the server serves on the same listener later.
package listen

import (
	"fmt"
	"net"
	"sync"
)

// Once is a lazily bound TCP listener. The zero value with Address set is
// ready; it is safe for concurrent use.
type Once struct {
	// Address to bind ("host:port").
	Address string
	// What names the address in errors, e.g. "monitoring".
	What string

	mu sync.Mutex
	l  net.Listener
}

// Listen binds the address unless it is bound already, and returns the
// listener.
func (o *Once) Listen() (net.Listener, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.l != nil {
		return o.l, nil
	}
	l, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("listening on the %s address %s: %w", o.What, o.Address, err)
	}
	o.l = l
	return l, nil
}

// Addr is the bound address, nil before Listen.
func (o *Once) Addr() net.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.l == nil {
		return nil
	}
	return o.l.Addr()
}
