package main

import (
	"strings"
	"testing"
)

func TestBadFlagsAreRefusedBeforeConnecting(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level=loud"}, `unknown --log-level "loud"`},
		{[]string{"--leader-elect"}, "--namespace (or $POD_NAMESPACE) is required with --leader-elect"},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
	} {
		err := run(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
