package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/controlplane"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/rootcert"
	"github.com/meshplane/meshplane/internal/webhook"
	"github.com/meshplane/meshplane/internal/xds/server"
)

// version of meshd, set at build time with
//
//	go build -ldflags "-X main.version=v0.1.0" ./cmd/meshd
var version = "v0.1.0-dev"

// notImplemented is said in --help, in the flags' usage and in the startup log.
const notImplemented = "NOT IMPLEMENTED YET"

const longHelp = `meshd is the Meshplane control plane.

What this release does:
  - loads the mesh config (--mesh-config), strictly: unknown fields are errors.
    The file is re-read every few seconds, so a ConfigMap mounted late, or
    changed, is picked up without a restart.
  - watches Services, EndpointSlices, Pods, Namespaces and Nodes (honouring the
    mesh config's discoverySelectors) and serves every proxy its configuration
    over xDS (ADS, state of the world and delta) on --xds-addr: Envoy sidecars,
    Envoy gateways and proxyless gRPC applications.
  - serves on --monitoring-addr:
      /healthz             liveness: 200 while the process is up
      /ready               readiness: 200 once the mesh config has loaded,
                           discovery has synced and the mesh CA has loaded;
                           503 and the reason otherwise
      /metrics             Prometheus metrics (meshd_build_info, meshd_xds_*, ...)
      /debug/syncz         every connected proxy: type, sent and acked versions
      /debug/config_dump?proxy=<id>  the resources last sent to a proxy
  - serves the validating admission webhook over TLS on --webhook-addr, at
    /validate: VirtualServices, DestinationRules, Gateways, ServiceEntries and
    Sidecars (networking.istio.io), PeerAuthentications, AuthorizationPolicies
    and RequestAuthentications (security.istio.io), every served version, are
    decoded strictly and checked; invalid ones are refused with one line per error (field path,
    message, finding code), and warnings are returned to the client. The
    certificate comes from --webhook-cert-dir, or is made at start-up from a
    self-signed CA whose certificate meshd patches into the caBundle of
    --webhook-config-name.
  - reads Istio traffic configuration (VirtualService, DestinationRule,
    Gateway, ServiceEntry, Sidecar, and TLS Secrets for gateways) and security
    configuration (PeerAuthentication, AuthorizationPolicy with the mesh
    config's extensionProviders for CUSTOM, RequestAuthentication, whose
    jwksUri key sets meshd fetches and inlines) and translates it for every
    proxy; with --write-status (the default) it
    writes each object's status (validationMessages with finding codes and a
    Reconciled condition) and a Warning event when a problem first appears.
  - runs the mesh CA the mesh config's "ca" selects. SelfSigned reads the
    Secret ` + v1alpha1.SelfSignedCASecretName + ` in --namespace (the operator creates it);
    Provided reads ca.provided.secretName there. The Secret is watched: a
    valid change (a new intermediate under the same root) signs from then on,
    an invalid one is logged and the CA loaded before keeps signing.
    CertManager signs through the cert-manager issuer ca.certManager.issuerRef
    names: each workload CSR becomes a CertificateRequest in --namespace, and
    meshd's own certificate for --secure-xds-dns-names is requested from the
    same issuer (DNS names only), renewed after two thirds of its life and
    retried with backoff when it fails. /ready is 503 until a valid CA has
    loaded (CertManager: while meshd holds no valid serving certificate), and
    says why. "ca" and "trustDomain" are read from the first mesh config
    loaded; a later change of them is logged and applies when meshd restarts.
  - publishes the mesh root to every namespace in scope (discoverySelectors,
    plus --namespace) as the ConfigMap ` + rootcert.ConfigMapName + `, key ` + rootcert.DataKey + `.
    With CertManager the root is the CA the issuer reports with meshd's
    certificate (status.ca, else the self-signed top of its chain).
  - serves on --secure-xds-addr, over TLS with a certificate from the mesh CA
    (CertManager: from the issuer) for --secure-xds-dns-names: Istio's
    certificate service (workloads authenticate with a service-account token,
    audience istio-ca, checked by TokenReview; certificates carry only their
    SPIFFE identity) and the same xDS as --xds-addr, for callers with a mesh
    client certificate or such a token.

` + notImplemented + ` (it comes in a later release):
  - the sidecar injector webhook: --webhook-addr serves /validate only;
    /inject answers 404. meshd logs a line saying so at start-up.`

type options struct {
	meshConfig     string
	revision       string
	logLevel       string
	monitoringAddr string
	xdsAddr        string
	secureXDSAddr  string
	namespace      string
	secureDNSNames []string
	webhookAddr    string
	kubeconfig     string
	debounceQuiet  time.Duration
	debounceMax    time.Duration
	debounceEPs    time.Duration
	writeStatus    bool
	statusLeaseNS  string

	// The admission webhooks' certificate and caBundle.
	webhookCertDir          string
	webhookDNSNames         []string
	webhookService          string
	webhookServiceNamespace string
	webhookConfigName       string
}

func newRootCommand() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "meshd",
		Short: "Meshplane control plane (this release: discovery, xDS, the mesh CA and the validating webhook; the injector webhook is not implemented yet)",
		Long:  longHelp,
		Args:  cobra.NoArgs,
		// Errors are printed once, by main; a runtime error is not a usage error.
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.meshConfig, "mesh-config", "/etc/meshplane/mesh.yaml",
		"path of the mesh config YAML (mounted from the mesh-config ConfigMap); /ready is 503 until it loads")
	f.StringVar(&o.revision, "revision", "default",
		"control-plane revision this meshd serves; a mesh config naming another revision is refused")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&o.debounceQuiet, "debounce-quiet", 100*time.Millisecond,
		"push once no change has arrived for this long")
	f.DurationVar(&o.debounceMax, "debounce-max", time.Second,
		"push at the latest this long after the first change of a burst")
	f.DurationVar(&o.debounceEPs, "debounce-endpoint-quiet", server.DefaultDebounceEndpointQuiet,
		"quiet window of changes that only move endpoints (their pushes are cheap); at most --debounce-quiet")
	f.BoolVar(&o.writeStatus, "write-status", true,
		"write what is wrong with each Istio networking object in the context of the mesh into its status "+
			"(validationMessages, Reconciled condition) and as Warning events")
	f.StringVar(&o.statusLeaseNS, "status-lease-namespace", os.Getenv("POD_NAMESPACE"),
		"namespace of the Lease meshd's replicas elect their status writer with (default: $POD_NAMESPACE; empty: every replica writes)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "",
		"kubeconfig of the cluster to watch when meshd runs outside it; in-cluster or $KUBECONFIG when empty")
	f.StringVar(&o.monitoringAddr, "monitoring-addr", ":15014", "address of the monitoring server (/healthz, /ready, /metrics)")
	f.StringVar(&o.xdsAddr, "xds-addr", ":15010",
		"address of the plaintext xDS server (ADS)")
	f.StringVar(&o.secureXDSAddr, "secure-xds-addr", ":15012",
		"address of the TLS server for xDS (callers with a mesh client certificate or a service-account token) "+
			"and Istio's certificate service")
	f.StringSliceVar(&o.secureDNSNames, "secure-xds-dns-names", nil,
		"DNS names of meshd's certificate on --secure-xds-addr, which clients verify; "+
			"empty: <webhook-service>.<namespace>.svc and <webhook-service>.<namespace>.svc.cluster.local")
	f.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"meshd's namespace, the mesh root namespace: the CA Secret is read there, or cert-manager CertificateRequests made there "+
			"(default: $POD_NAMESPACE, else "+defaultNamespace+")")
	f.StringVar(&o.webhookAddr, "webhook-addr", ":15017",
		"address of the admission webhooks, served over TLS: /validate checks Istio networking config; "+
			"the sidecar injector (/inject) is "+notImplemented)
	f.StringVar(&o.webhookCertDir, "webhook-cert-dir", "",
		"directory holding tls.crt and tls.key for the webhooks (a cert-manager Secret, envtest), re-read when they change; "+
			"empty: a self-signed CA and certificate made at start-up")
	f.StringSliceVar(&o.webhookDNSNames, "webhook-dns-names", nil,
		"more DNS names for the self-signed webhook certificate, besides <webhook-service>.<namespace>.svc and .svc.cluster.local")
	f.StringVar(&o.webhookService, "webhook-service", "meshd",
		"name of meshd's Service, which the webhook configurations call; names the self-signed webhook certificate "+
			"and, by default, the certificate on --secure-xds-addr")
	f.StringVar(&o.webhookServiceNamespace, "webhook-service-namespace", "",
		"namespace of meshd's Service, for the self-signed webhook certificate; --namespace when empty")
	f.StringVar(&o.webhookConfigName, "webhook-config-name", "",
		"ValidatingWebhookConfiguration whose webhooks' caBundle meshd keeps trusting its self-signed CA "+
			"(a server-side apply of those fields only); empty: none is patched. Not with --webhook-cert-dir")

	// A daemon has no use for shell completion.
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.AddCommand(newVersionCommand())
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print meshd's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version)
			return err
		},
	}
}

// parseLogLevel maps --log-level onto a zap level.
func parseLogLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("--log-level %q: must be debug, info, warn or error", s)
}

// checkAddr refuses an address that could never be listened on, so a typo in
// a flag fails at startup even for the addresses not served yet.
func checkAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: %w", flag, addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && flag != "monitoring-addr") {
		return fmt.Errorf("--%s %q: port must be a number from 1 to 65535", flag, addr)
	}
	return nil
}

func run(ctx context.Context, o *options, logOut io.Writer) error {
	level, err := parseLogLevel(o.logLevel)
	if err != nil {
		return err
	}
	if o.debounceQuiet <= 0 || o.debounceMax < o.debounceQuiet {
		return fmt.Errorf("--debounce-quiet (%s) must be positive and at most --debounce-max (%s)", o.debounceQuiet, o.debounceMax)
	}
	for _, a := range []struct{ flag, addr string }{
		{"monitoring-addr", o.monitoringAddr},
		{"xds-addr", o.xdsAddr},
		{"secure-xds-addr", o.secureXDSAddr},
		{"webhook-addr", o.webhookAddr},
	} {
		if err := checkAddr(a.flag, a.addr); err != nil {
			return err
		}
	}
	if err := checkWebhookFlags(o); err != nil {
		return err
	}
	if o.namespace == "" {
		o.namespace = defaultNamespace
	}
	if len(o.secureDNSNames) == 0 {
		o.secureDNSNames = webhook.ServiceDNSNames(o.webhookService, o.namespace)
	}

	// JSON lines; no stack traces on errors, which here are about files and
	// flags, not about code.
	logger := zap.New(zap.WriteTo(logOut), zap.Level(level), zap.StacktraceLevel(zapcore.PanicLevel))
	ctrllog.SetLogger(logger)
	log := logger.WithName("meshd")

	log.Info("starting meshd", "version", version, "revision", o.revision, "meshConfig", o.meshConfig, "namespace", o.namespace)
	log.Info(notImplemented+": not serving the sidecar injector webhook (/inject) on --webhook-addr; it comes in a later release", "addr", o.webhookAddr)

	// The first SIGTERM or SIGINT starts a graceful shutdown; once it has, the
	// signals get their default behaviour back, so a second one ends meshd at once.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop)

	restConfig, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	var cp *controlplane.ControlPlane
	srv := meshd.NewServer(meshd.Options{
		MonitoringAddr: o.monitoringAddr,
		MeshConfigPath: o.meshConfig,
		Revision:       o.revision,
		Version:        version,
		Logger:         log,
		Debug:          http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cp.DebugHandler().ServeHTTP(w, r) }),
		ReadyCheck:     func() (bool, string) { return cp.Ready() },
		OnMeshConfig:   func(cfg *meshd.MeshConfig) { cp.SetMeshConfig(cfg) },
	})
	wh, err := newWebhooks(o, restConfig, srv.Registry(), log)
	if err != nil {
		return err
	}
	if err := wh.Listen(); err != nil {
		return err
	}
	cp, err = controlplane.New(controlplane.Options{
		RestConfig:           restConfig,
		XDSAddr:              o.xdsAddr,
		SecureXDSAddr:        o.secureXDSAddr,
		Namespace:            o.namespace,
		ServingDNSNames:      o.secureDNSNames,
		Debounce:             server.Debounce{Quiet: o.debounceQuiet, Max: o.debounceMax, EndpointQuiet: o.debounceEPs},
		Registry:             srv.Registry(),
		Logger:               log,
		WriteStatus:          o.writeStatus,
		StatusLeaseNamespace: o.statusLeaseNS,
	})
	if err != nil {
		return err
	}
	// Any stopping stops all: meshd without xDS, health or its webhooks is no use.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpErr := make(chan error, 1)
	go func() {
		defer cancel()
		cpErr <- cp.Run(ctx)
	}()
	whErr := make(chan error, 1)
	go func() {
		defer cancel()
		whErr <- wh.Run(ctx)
	}()
	srvErr := srv.Run(ctx)
	cancel()
	if err := errors.Join(srvErr, <-cpErr, <-whErr); err != nil {
		return err
	}
	log.Info("meshd stopped", "reason", context.Cause(ctx).Error())
	return nil
}

// kubeConfig reads --kubeconfig when given, else the in-cluster config or $KUBECONFIG.
func kubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("reading --kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to watch (not in a cluster, no $KUBECONFIG, no --kubeconfig): %w", err)
	}
	return cfg, nil
}
