package harness

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// LazyEnvtest is a package's API server, started by the first test that
// asks for it (unit tests and benchmarks of the package need not wait for
// one), with Setup run once on it (CRDs, say). TestMain stops it:
//
//	var api harness.LazyEnvtest
//	func TestMain(m *testing.M) { os.Exit(api.Run(m)) }
type LazyEnvtest struct {
	// Setup, when set, prepares the new API server; its error fails every
	// test that asks for the server.
	Setup func(*rest.Config) error

	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	err  error
}

// Config starts the API server on first use and returns its cluster-admin
// config; it fails tb when the server did not start or Setup failed.
func (l *LazyEnvtest) Config(tb testing.TB) *rest.Config {
	tb.Helper()
	l.once.Do(func() {
		l.env, l.cfg, l.err = StartEnvtest()
		if l.err == nil && l.Setup != nil {
			l.err = l.Setup(l.cfg)
		}
	})
	if l.err != nil {
		tb.Fatal(l.err)
	}
	return l.cfg
}

// Run runs the package's tests and then stops the API server, if one was
// started: always, since it stops kube-apiserver and etcd. It returns the
// tests' exit code.
func (l *LazyEnvtest) Run(m *testing.M) int {
	code := m.Run()
	if l.env != nil {
		if err := l.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// Environment is the started envtest environment (nil before Config), for
// tests that read its files, such as the API server's certificate directory.
func (l *LazyEnvtest) Environment() *envtest.Environment { return l.env }
