package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Node metadata keys meshd identifies a proxyless gRPC workload by, and the
// proxy type it has (internal/xds/server/identity.go; a test holds them equal).
const (
	MetadataProxyType   = "PROXY_TYPE"
	MetadataNamespace   = "NAMESPACE"
	MetadataPodName     = "POD_NAME"
	MetadataInstanceIPs = "INSTANCE_IPS"

	ProxyTypeGRPC = "grpc"
)

// GRPCServerListenerTemplate is the server_listener_resource_name_template:
// grpc-go servers ask for their listener under this name, with %s replaced
// by the listening ip:port, and meshd generates inbound listeners for
// proxyless servers under the same one (generate.GRPCServerListenerTemplate;
// a test holds the two equal). It is repeated here so the agent does not
// link meshd's generators.
const GRPCServerListenerTemplate = "xds.meshplane.io/grpc/lds/inbound/%s"

// CertificateProviderName is the certificate provider instance the grpc
// bootstrap defines; xDS security configuration from meshd refers to it.
const CertificateProviderName = "default"

// Node is the workload the agent runs beside.
type Node struct {
	PodName   string
	Namespace string
	IP        string
}

// ID is the xDS node id, <pod>.<namespace>, the convention meshd parses.
func (n Node) ID() string { return n.PodName + "." + n.Namespace }

// GRPCBootstrapOptions describe a grpc-go xDS bootstrap (GRPC_XDS_BOOTSTRAP).
type GRPCBootstrapOptions struct {
	// XDSServerURI is the gRPC target of the xDS server: the agent's local
	// proxy ("unix:///path" or "127.0.0.1:port"), or meshd itself.
	XDSServerURI string
	// DirectTLS is set when XDSServerURI is meshd: the application then
	// verifies meshd against RootCertFile and sends the token itself, with
	// grpc-go's jwt_token_file call credentials, which grpc-go only reads
	// with GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true.
	DirectTLS bool
	// TokenFile is the projected token, with DirectTLS only.
	TokenFile string
	Node      Node
	// CertDir holds the files FileWriter writes.
	CertDir string
	// RefreshInterval is how often grpc-go re-reads the certificate files.
	RefreshInterval time.Duration
}

// GRPCBootstrap returns the JSON of a grpc-go xDS bootstrap: the xDS server,
// the node identity meshd reads, a file_watcher certificate provider named
// CertificateProviderName over the files of CertDir, and the server listener
// name template meshd generates inbound listeners under.
func GRPCBootstrap(o GRPCBootstrapOptions) ([]byte, error) {
	var errs []error
	if o.XDSServerURI == "" {
		errs = append(errs, errors.New("xDS server URI is required"))
	}
	if o.Node.PodName == "" || o.Node.Namespace == "" {
		errs = append(errs, errors.New("pod name and namespace are required (the node id is <pod>.<namespace>)"))
	}
	if !filepath.IsAbs(o.CertDir) {
		errs = append(errs, fmt.Errorf("certificate directory %q must be an absolute path", o.CertDir))
	}
	if o.DirectTLS && !filepath.IsAbs(o.TokenFile) {
		errs = append(errs, fmt.Errorf("token file %q must be an absolute path", o.TokenFile))
	}
	if o.RefreshInterval < time.Second {
		errs = append(errs, fmt.Errorf("refresh interval %s is under a second", o.RefreshInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}

	server := map[string]any{
		"server_uri":      o.XDSServerURI,
		"channel_creds":   []any{map[string]any{"type": "insecure"}},
		"server_features": []any{"xds_v3"},
	}
	if o.DirectTLS {
		server["channel_creds"] = []any{map[string]any{"type": "tls", "config": map[string]any{
			"ca_certificate_file": filepath.Join(o.CertDir, RootCertFile),
		}}}
		server["call_creds"] = []any{map[string]any{"type": "jwt_token_file", "config": map[string]any{
			"jwt_token_file": o.TokenFile,
		}}}
	}
	metadata := map[string]any{
		MetadataProxyType: ProxyTypeGRPC,
		MetadataPodName:   o.Node.PodName,
		MetadataNamespace: o.Node.Namespace,
	}
	if o.Node.IP != "" {
		metadata[MetadataInstanceIPs] = o.Node.IP
	}
	// json.Marshal sorts map keys, so the file is the same for the same input.
	out, err := json.MarshalIndent(map[string]any{
		"xds_servers": []any{server},
		"node":        map[string]any{"id": o.Node.ID(), "metadata": metadata},
		"certificate_providers": map[string]any{
			CertificateProviderName: map[string]any{
				"plugin_name": "file_watcher",
				"config": map[string]any{
					"certificate_file":    filepath.Join(o.CertDir, CertChainFile),
					"private_key_file":    filepath.Join(o.CertDir, KeyFile),
					"ca_certificate_file": filepath.Join(o.CertDir, RootCertFile),
					"refresh_interval":    durationJSON(o.RefreshInterval),
				},
			},
		},
		"server_listener_resource_name_template": GRPCServerListenerTemplate,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// durationJSON is a protobuf Duration in JSON form ("90s", "1.5s"), the
// form grpc-go's file_watcher expects.
func durationJSON(d time.Duration) string {
	s := fmt.Sprintf("%.9f", d.Seconds())
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "s"
}
