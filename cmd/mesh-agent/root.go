package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshplane/meshplane/internal/agent"
)

// version of mesh-agent, set at build time with
//
//	go build -ldflags "-X main.version=v0.1.0" ./cmd/mesh-agent
var version = "v0.1.0-dev"

// defaultMeshd is meshd of the default revision in the default control-plane
// namespace; the sidecar injector passes --ca-addr for any other.
const defaultMeshd = "meshd.meshplane-system.svc"

// Defaults of the files mode: Istio's paths for proxyless gRPC, so pod
// templates written for Istio's grpc-agent carry over.
const (
	defaultOutputDir     = "/var/lib/istio/data"
	defaultGRPCBootstrap = "/etc/istio/proxy/grpc-bootstrap.json"
)

const longHelp = `mesh-agent runs beside a workload of the mesh.

It reads the pod's projected service-account token (audience "istio-ca",
re-read on every use as the kubelet rotates it), makes an ECDSA P-256 key and
a certificate request, and has meshd's CA (--ca-addr, Istio's
IstioCertificateService over TLS, meshd verified against --root-cert) sign it.
The certificate is renewed at about half its lifetime; failures are retried
with bounded backoff, and a certificate that expires before it could be
renewed is logged as an error.

--mode sds (Envoy sidecars and gateways): the certificate is served over SDS
on the Unix socket --sds-socket, as the secrets "default" (certificate chain
and key) and "ROOTCA" (the mesh root). The key never touches the disk.

--mode files (proxyless gRPC): cert-chain.pem, key.pem (mode 0600) and
root-cert.pem are written atomically into --output-dir, and once they are
there, a grpc-go xDS bootstrap is written to --grpc-bootstrap (point
GRPC_XDS_BOOTSTRAP at it). Its node is $POD_NAME.$POD_NAMESPACE; its
certificate provider "default" watches the three files.

xDS proxy: unless --xds-proxy-listen is empty, the agent accepts ADS streams
(state of the world and delta) there without authentication and relays each
to meshd (--xds-addr) over TLS with the token added, so the application needs
no token. When either side ends a stream, the other is ended too. With an
empty --xds-proxy-listen in files mode, the bootstrap points the application
at --xds-addr itself, with TLS and grpc-go's jwt_token_file call credentials
(set GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true in the application).

Environment: POD_NAME, POD_NAMESPACE and INSTANCE_IP name the workload
(downward API). POD_NAMESPACE, when set, must be the namespace of the issued
identity. SIGTERM or SIGINT stops the agent: its sockets are removed and local
streams end, so clients reconnect.`

type options struct {
	mode           string
	caAddr         string
	xdsAddr        string
	rootCert       string
	tokenFile      string
	certTTL        time.Duration
	trustDomain    string
	sdsSocket      string
	outputDir      string
	grpcBootstrap  string
	xdsProxyListen string
	logLevel       string
}

func newRootCommand() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "mesh-agent",
		Short: "Workload certificates (SDS or files), grpc-go xDS bootstrap and an xDS proxy to meshd",
		Long:  longHelp,
		Args:  cobra.NoArgs,
		// Errors are printed once, by main; a runtime error is not a usage error.
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd.Flags(), os.Getenv)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg, o.logLevel, cmd.ErrOrStderr())
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.mode, "mode", string(agent.ModeSDS),
		"how the workload gets its certificate: sds (Envoy, over --sds-socket) or files (proxyless gRPC, in --output-dir)")
	f.StringVar(&o.caAddr, "ca-addr", net.JoinHostPort(defaultMeshd, strconv.Itoa(agent.DefaultCAPort)),
		"meshd's certificate service, host:port, over TLS; its certificate must be valid for host")
	f.StringVar(&o.xdsAddr, "xds-addr", "",
		"meshd's xDS over TLS, host:port: where the xDS proxy relays to (default: --ca-addr; meshd serves both on 15012)")
	f.StringVar(&o.rootCert, "root-cert", agent.DefaultRootCertFile,
		"mesh root certificate, PEM (ConfigMap meshplane-ca-root-cert, key root-cert.pem): meshd is verified against it "+
			"and it is handed to the workload as its trust bundle; re-read on every use")
	f.StringVar(&o.tokenFile, "token-file", agent.DefaultTokenFile,
		`projected service-account token (audience "istio-ca") sent to meshd; re-read on every use`)
	f.DurationVar(&o.certTTL, "cert-ttl", 24*time.Hour,
		"certificate lifetime to ask for (the CA may give less); renewal comes at about half of it")
	f.StringVar(&o.trustDomain, "trust-domain", "",
		"trust domain the issued SPIFFE ID must have, e.g. cluster.local (default: whatever the CA issues)")
	f.StringVar(&o.sdsSocket, "sds-socket", agent.DefaultSDSSocket,
		"Unix socket SDS is served on (mode sds only)")
	f.StringVar(&o.outputDir, "output-dir", defaultOutputDir,
		"absolute directory for cert-chain.pem, key.pem and root-cert.pem (mode files only)")
	f.StringVar(&o.grpcBootstrap, "grpc-bootstrap", defaultGRPCBootstrap,
		"absolute path of the grpc-go xDS bootstrap to write (mode files only; empty: none). Needs $POD_NAME and $POD_NAMESPACE")
	f.StringVar(&o.xdsProxyListen, "xds-proxy-listen", agent.DefaultXDSProxyListen,
		"where the xDS proxy listens: unix:///absolute/path or a loopback host:port (127.0.0.1:15010); empty: no proxy")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info or error")

	// An agent has no use for shell completion.
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print mesh-agent's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version)
			return err
		},
	})
	return cmd
}

// config checks the flags and the environment together and returns the
// agent's configuration; every problem found is reported, by flag name.
func (o *options) config(flags *pflag.FlagSet, getenv func(string) string) (agent.Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	mode := agent.Mode(o.mode)
	switch mode {
	case agent.ModeSDS:
		for _, name := range []string{"output-dir", "grpc-bootstrap"} {
			if flags.Changed(name) {
				bad("--%s is for --mode files; --mode sds serves the certificate over --sds-socket", name)
			}
		}
		if !filepath.IsAbs(o.sdsSocket) {
			bad("--sds-socket %q must be an absolute path", o.sdsSocket)
		}
	case agent.ModeFiles:
		if flags.Changed("sds-socket") {
			bad("--sds-socket is for --mode sds; --mode files writes the certificate into --output-dir")
		}
		if !filepath.IsAbs(o.outputDir) {
			bad("--output-dir %q must be an absolute path (the grpc bootstrap refers to its files)", o.outputDir)
		}
	default:
		bad("--mode %q: must be sds or files", o.mode)
	}

	if err := checkHostPort(o.caAddr); err != nil {
		bad("--ca-addr: %w", err)
	}
	xdsAddr := o.xdsAddr
	if xdsAddr == "" {
		xdsAddr = o.caAddr
	} else if err := checkHostPort(xdsAddr); err != nil {
		bad("--xds-addr: %w", err)
	}
	if o.xdsProxyListen != "" {
		if _, _, err := agent.ParseLocalAddress(o.xdsProxyListen); err != nil {
			bad("--xds-proxy-listen: %w", err)
		}
	}
	if o.rootCert == "" {
		bad("--root-cert is required: meshd cannot be verified without the mesh root")
	}
	if o.tokenFile == "" {
		bad("--token-file is required: meshd authenticates the workload by its token")
	}
	if o.certTTL < time.Second {
		bad("--cert-ttl %s: must be at least 1s", o.certTTL)
	}
	if td := o.trustDomain; td != "" && (strings.ContainsAny(td, "/: \t") || strings.ToLower(td) != td) {
		bad("--trust-domain %q: want a lower-case name such as cluster.local, without spiffe://", td)
	}

	node := agent.Node{PodName: getenv("POD_NAME"), Namespace: getenv("POD_NAMESPACE"), IP: getenv("INSTANCE_IP")}
	bootstrap := ""
	if mode == agent.ModeFiles && o.grpcBootstrap != "" {
		bootstrap = o.grpcBootstrap
		if !filepath.IsAbs(bootstrap) {
			bad("--grpc-bootstrap %q must be an absolute path", bootstrap)
		}
		if node.PodName == "" || node.Namespace == "" {
			bad("--grpc-bootstrap needs $POD_NAME and $POD_NAMESPACE (the node id is <pod>.<namespace>); set them from the downward API, or pass --grpc-bootstrap=\"\"")
		}
		if o.xdsProxyListen == "" && !filepath.IsAbs(o.tokenFile) {
			bad("--token-file %q must be an absolute path: without the xDS proxy the grpc bootstrap refers to it", o.tokenFile)
		}
	}
	if ip := node.IP; ip != "" && net.ParseIP(ip) == nil {
		bad("$INSTANCE_IP %q is not an IP address", ip)
	}
	if err := errors.Join(errs...); err != nil {
		return agent.Config{}, err
	}

	cfg := agent.Config{
		Mode:              mode,
		CAAddr:            o.caAddr,
		XDSAddr:           xdsAddr,
		RootCertFile:      o.rootCert,
		TokenFile:         o.tokenFile,
		CertTTL:           o.certTTL,
		TrustDomain:       o.trustDomain,
		GRPCBootstrapFile: bootstrap,
		XDSProxyListen:    o.xdsProxyListen,
		Node:              node,
	}
	if mode == agent.ModeSDS {
		cfg.SDSSocket = o.sdsSocket
	} else {
		cfg.OutputDir = o.outputDir
	}
	return cfg, nil
}

// checkHostPort refuses an address that could never be dialled.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q: the host is missing", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port must be a number from 1 to 65535", addr)
	}
	return nil
}

// newLogger writes JSON lines at level: debug, info or error.
func newLogger(level string, out io.Writer) (logr.Logger, error) {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug // logr's V(1) to V(4)
	case "info":
		l = slog.LevelInfo
	case "error":
		l = slog.LevelError
	default:
		return logr.Logger{}, fmt.Errorf("--log-level %q: must be debug, info or error", level)
	}
	return logr.FromSlogHandler(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: l})), nil
}

func run(ctx context.Context, cfg agent.Config, logLevel string, logOut io.Writer) error {
	log, err := newLogger(logLevel, logOut)
	if err != nil {
		return err
	}
	cfg.Logger = log.WithName("mesh-agent")
	if cfg.Node.Namespace == "" {
		cfg.Logger.Info("POD_NAMESPACE is not set: the namespace of the issued identity is not checked")
	}
	cfg.Logger.Info("mesh-agent version", "version", version)

	// The first SIGTERM or SIGINT starts a graceful stop; once it has, the
	// signals get their default behaviour back, so a second one ends the
	// agent at once.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop)
	return agent.Run(ctx, cfg)
}
