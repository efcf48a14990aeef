package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc/credentials"
)

// DefaultRootCertFile is where the sidecar injector mounts the mesh root
// certificate (ConfigMap meshplane-ca-root-cert, key root-cert.pem).
const DefaultRootCertFile = "/var/run/secrets/istio/root-cert.pem"

// readRoots reads a PEM file of one or more CA certificates. During a root
// rotation the ConfigMap holds the old and the new root, so all are kept.
func readRoots(path string) ([]byte, *x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the mesh root certificate: %w", err)
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh root certificate %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, nil, fmt.Errorf("mesh root certificate %s: %q is not a CA certificate", path, c.Subject)
		}
		pool.AddCert(c)
	}
	return data, pool, nil
}

// parseCertificates parses every CERTIFICATE block of a PEM text and
// refuses anything else, so that a key pasted into a certificate file is
// noticed rather than ignored.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q (want CERTIFICATE)", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// rootFileCredentials is client TLS that trusts the roots in a file, read
// again at every handshake: the root ConfigMap changes during a root
// rotation, and a long-running agent must follow it without a restart.
type rootFileCredentials struct {
	rootFile   string
	serverName string // empty: the host of the address dialled
}

func newRootFileCredentials(rootFile string) credentials.TransportCredentials {
	return &rootFileCredentials{rootFile: rootFile}
}

func (c *rootFileCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	_, pool, err := readRoots(c.rootFile)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: c.serverName, MinVersion: tls.VersionTLS12}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, raw)
}

func (c *rootFileCredentials) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("root file credentials are for clients only")
}

func (c *rootFileCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2", ServerName: c.serverName}
}

func (c *rootFileCredentials) Clone() credentials.TransportCredentials {
	clone := *c
	return &clone
}

// OverrideServerName is part of the interface grpc-go still requires.
func (c *rootFileCredentials) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}
