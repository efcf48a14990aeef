package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// File names in the output directory of the files mode, as Istio's agent
// writes them for proxyless gRPC.
const (
	CertChainFile = "cert-chain.pem"
	KeyFile       = "key.pem"
	RootCertFile  = "root-cert.pem"
)

// FileWriter writes each certificate into Dir for applications that read
// their credentials from files (grpc-go's file_watcher certificate provider).
type FileWriter struct {
	Dir string
}

// Publish writes b's key (mode 0600), chain and roots, each atomically. The
// key goes first: a reader that sees the new chain then finds its key; one
// that sees the new key with the old chain (the pair does not match) keeps
// what it had and reads again at its next refresh.
func (w *FileWriter) Publish(b *Bundle) error {
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return fmt.Errorf("creating the certificate directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{RootCertFile, b.Roots, 0o644},
		{KeyFile, b.PrivateKey, 0o600},
		{CertChainFile, b.CertChain, 0o644},
	} {
		if err := WriteFileAtomic(filepath.Join(w.Dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic replaces path with data: written to a temporary file in the
// same directory (a rename is atomic only within one file system), synced,
// given mode, then renamed over path. A reader sees the old content or the
// new, never a part of either.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes the file 0600, so a key is never readable by others,
	// not even briefly.
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
