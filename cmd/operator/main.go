// Command operator runs the Meshplane operator: it reconciles MeshControlPlane
// resources into installed meshes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshplane/meshplane/internal/operator"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "v0.1.0-dev"

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "operator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	var (
		opts      operator.Options
		namespace string
		logLevel  string
		printVer  bool
	)
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", `Address of the Prometheus metrics endpoint; "0" disables it.`)
	fs.StringVar(&opts.HealthProbeAddr, "health-probe-bind-address", ":8081", `Address of /healthz and /readyz; "0" disables them.`)
	fs.BoolVar(&opts.LeaderElection, "leader-elect", true, "Elect a leader so only one operator replica acts at a time.")
	fs.StringVar(&namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"Namespace the operator runs in; holds the leader-election lease. Defaults to $POD_NAMESPACE.")
	fs.StringVar(&logLevel, "log-level", "info", "Log level: debug, info or error.")
	fs.BoolVar(&printVer, "version", false, "Print the version and exit.")
	config.RegisterFlags(fs) // --kubeconfig, for running outside a cluster ($KUBECONFIG works too)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if printVer {
		fmt.Println(version)
		return nil
	}
	level, err := parseLevel(logLevel)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.Level(level)))
	log := ctrl.Log.WithName("operator")

	if opts.LeaderElection && namespace == "" {
		return fmt.Errorf("--namespace (or $POD_NAMESPACE) is required with --leader-elect, to hold the lease")
	}
	opts.LeaderElectionNamespace = namespace

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := operator.NewManager(cfg, opts)
	if err != nil {
		return err
	}
	log.Info("Starting Meshplane operator", "version", version, "leaderElection", opts.LeaderElection, "namespace", namespace)
	return mgr.Start(ctrl.SetupSignalHandler())
}

func parseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("unknown --log-level %q: use debug, info or error", s)
}
