package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// keyFragments returns pieces of a private key in every encoding it could
// leak in: lines of its PEM, windows of its DER as base64 (standard and URL),
// hex and raw bytes, of its PEM text as base64 (how JSON carries []byte), and
// its secret scalar(s) in hex and decimal. Any one found in an output is a
// leak.
func keyFragments(t *testing.T, keyPEM []byte) []string {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("key is not PEM")
	}
	der := block.Bytes
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
	windows(base64.StdEncoding.EncodeToString(der), 16)
	windows(base64.RawURLEncoding.EncodeToString(der), 16)
	windows(base64.StdEncoding.EncodeToString(keyPEM), 16)
	windows(hex.EncodeToString(der), 16)
	windows(strings.ToUpper(hex.EncodeToString(der)), 16)
	windows(string(der), 8)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		d := new(big.Int).SetBytes(b)
		windows(d.Text(10), 16)
		windows(d.Text(16), 16)
	case *rsa.PrivateKey:
		windows(k.D.Text(10), 16)
		windows(k.D.Text(16), 16)
		windows(k.Primes[0].Text(10), 16)
	}
	return frags
}

func assertNoKey(t *testing.T, what, output string, frags []string) {
	t.Helper()
	for _, f := range frags {
		if strings.Contains(output, f) {
			t.Errorf("%s contains key material %q:\n%s", what, f, output)
			return
		}
	}
}

// TestNoKeyMaterialInErrorsPrintsOrLogs drives every way a CA key could
// surface (refused bundles, printing, JSON, structured logs, signing errors)
// and scans the output for any fragment of the key.
func TestNoKeyMaterialInErrorsPrintsOrLogs(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, nil)
	other := newTestCA(t, "other", nil, nil)
	good := pluginBundle(inter, root)
	frags := append(keyFragments(t, inter.keyPEM), keyFragments(t, root.keyPEM)...)
	frags = append(frags, keyFragments(t, other.keyPEM)...)
	if len(frags) < 100 {
		t.Fatalf("only %d fragments: the scan would prove little", len(frags))
	}
	// The scan finds a key that is there, in each encoding.
	found := func(s string) bool {
		for _, f := range frags {
			if strings.Contains(s, f) {
				return true
			}
		}
		return false
	}
	der, _ := pem.Decode(inter.keyPEM)
	rawJSON, _ := json.Marshal([]byte(inter.keyPEM))
	for _, s := range []string{string(inter.keyPEM), fmt.Sprintf("%x", der.Bytes), fmt.Sprintf("%X", der.Bytes), base64.StdEncoding.EncodeToString(der.Bytes), string(rawJSON), fmt.Sprint(inter.key)} {
		if !found(s) {
			t.Fatalf("the scan does not recognise the key in %.40q...", s)
		}
	}

	var out bytes.Buffer
	log := funcr.New(func(prefix, args string) { out.WriteString(prefix + args + "\n") }, funcr.Options{Verbosity: 10})

	// Refused bundles that carry a real key somewhere.
	truncated := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der.Bytes[:len(der.Bytes)-3]})
	for _, b := range []Bundle{
		{CACert: inter.pem, CAKey: other.keyPEM, RootCert: root.pem},                                               // mismatch
		{CACert: inter.keyPEM, CAKey: inter.keyPEM, RootCert: root.pem},                                            // key in the cert slot
		{CACert: inter.pem, CAKey: truncated, RootCert: root.pem},                                                  // broken key
		{CACert: inter.pem, CAKey: append(append([]byte{}, inter.keyPEM...), other.keyPEM...), RootCert: root.pem}, // two keys
		{CACert: inter.pem, CAKey: inter.keyPEM, RootCert: other.keyPEM},                                           // key as root
		{CACert: inter.pem, CAKey: inter.keyPEM, RootCert: root.pem, CertChain: root.keyPEM},                       // key as chain
		{CACert: other.pem, CAKey: other.keyPEM, RootCert: root.pem},                                               // chain invalid
	} {
		_, err := NewAuthority(b)
		if err == nil {
			t.Fatalf("bundle accepted: %v", b)
		}
		var h Holder
		herr := h.Update(b)
		log.Error(err, "Refused CA bundle", "bundle", b, "holderError", herr)
		assertNoKey(t, "error", err.Error()+fmt.Sprintf(" %+v %#v", err, err), frags)
	}

	a, err := NewAuthority(good)
	if err != nil {
		t.Fatal(err)
	}
	var h Holder
	if err := h.Update(good); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for name, v := range map[string]any{"bundle": good, "*bundle": &good, "key": good.CAKey, "authority": a, "*authority": *a, "holder": &h} {
			assertNoKey(t, fmt.Sprintf("%s printed with %s", name, verb), fmt.Sprintf(verb, v), frags)
		}
	}
	for name, v := range map[string]any{"bundle": good, "*bundle": &good, "key": good.CAKey} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		assertNoKey(t, "JSON of "+name, string(j), frags)
	}
	log.Info("Loaded CA", "bundle", good, "key", good.CAKey, "authority", a, "holder", &h)

	// Signing errors, including one that fails inside the signer.
	id := mustIdentity(t, "cluster.local", "ns", "sa")
	for _, csr := range [][]byte{inter.keyPEM, csrFor(t, newP256(t), mustIdentity(t, "cluster.local", "ns", "other"))} {
		_, err := h.Sign(context.Background(), csr, id, time.Hour)
		if err == nil {
			t.Fatal("bad CSR signed")
		}
		log.Error(err, "Refused CSR")
		assertNoKey(t, "signing error", err.Error(), frags)
	}
	expired := *a
	expired.now = func() time.Time { return inter.cert.NotAfter.Add(time.Hour) }
	if _, err := expired.Sign(csrFor(t, newP256(t), id), id, time.Hour); err == nil {
		t.Fatal("expired CA signed")
	} else {
		assertNoKey(t, "expired CA error", err.Error(), frags)
	}

	if out.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	assertNoKey(t, "logs", out.String(), frags)
}
