package certservice

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc/status"

	"github.com/meshplane/meshplane/internal/ca"
)

// secretFragments returns pieces of keyPEM in the encodings it could leak in
// (PEM lines, base64/hex/raw windows of its DER, base64 of its PEM text).
func secretFragments(t *testing.T, keyPEM []byte) []string {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("key is not PEM")
	}
	var frags []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			frags = append(frags, line)
		}
	}
	windows := func(s string, n int) {
		for i := 0; i+n <= len(s); i += n / 2 {
			frags = append(frags, s[i:i+n])
		}
	}
	windows(base64.StdEncoding.EncodeToString(block.Bytes), 16)
	windows(base64.RawURLEncoding.EncodeToString(block.Bytes), 16)
	windows(base64.StdEncoding.EncodeToString(keyPEM), 16)
	windows(hex.EncodeToString(block.Bytes), 16)
	windows(string(block.Bytes), 8)
	return frags
}

// TestNoKeyOrTokenInLogsOrErrors runs the service through issuance and every
// refusal with logging at full verbosity, then scans the logs and the errors
// callers got for the CA key and for the callers' tokens.
func TestNoKeyOrTokenInLogsOrErrors(t *testing.T) {
	holder, bundle := newHolder(t)
	var mu sync.Mutex
	var logs bytes.Buffer
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + args + "\n")
	}, funcr.Options{Verbosity: 10})

	const token = "s3cr3t-t0ken-value-that-must-not-leak"
	const otherToken = "an0ther-t0ken-value-that-must-not-leak"
	auth := staticAuth{token: {Namespace: "shop", Name: "cart"}}
	client := startService(t, holder, Options{Authenticator: auth, Logger: log})
	broken := startService(t, holder, Options{Authenticator: auth, Logger: log, Signer: &ca.Holder{}})
	ctx := context.Background()

	var errs []string
	for _, tc := range []struct {
		token string
		csr   []byte
	}{
		{token, newCSR(t, nil)}, // issued
		{token, newCSR(t, []string{"spiffe://cluster.local/ns/shop/sa/admin"})}, // another identity
		{token, bundle.CAKey},                 // the key itself as the CSR
		{token, []byte(bundle.CAKey)[10:200]}, // a piece of it
		{otherToken, newCSR(t, nil)},          // unknown token
	} {
		_, err := call(ctx, client, tc.token, tc.csr, 0)
		if err != nil {
			errs = append(errs, err.Error(), status.Convert(err).Message())
		}
	}
	if _, err := call(ctx, broken, token, newCSR(t, nil), 0); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) < 5 {
		t.Fatalf("only %d refusals: the scan would prove little", len(errs))
	}
	mu.Lock()
	output := logs.String() + strings.Join(errs, "\n")
	mu.Unlock()
	if !strings.Contains(output, "Refused") || !strings.Contains(output, "Issued") {
		t.Fatalf("the logs miss issuance or refusals:\n%s", output)
	}

	frags := append(secretFragments(t, bundle.CAKey), token, otherToken)
	for _, f := range frags {
		if strings.Contains(output, f) {
			t.Fatalf("logs or errors contain secret material %q:\n%s", f, output)
		}
	}
}
