package server

import (
	"fmt"

	"github.com/go-logr/logr"
)

// gcpLogger adapts logr to go-control-plane's log.Logger. Its info messages
// come per watch and per response, so they sit at V(2), debug at V(4).
type gcpLogger struct{ l logr.Logger }

func (g gcpLogger) Debugf(format string, args ...any) { g.at(4, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.at(2, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.at(0, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) {
	g.l.Error(fmt.Errorf(format, args...), "go-control-plane")
}

func (g gcpLogger) at(v int, format string, args []any) {
	if l := g.l.V(v); l.Enabled() {
		l.Info(fmt.Sprintf(format, args...))
	}
}
