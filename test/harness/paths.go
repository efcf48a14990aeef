package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	// ModulePath is the module whose root ModuleRoot finds.
	ModulePath = "github.com/meshplane/meshplane"

	// KubeVersion is the Kubernetes version of the binaries in BinDir.
	KubeVersion = "v1.37.2"

	// RootEnv, when set, names the module root and skips the search for go.mod
	// (for a demo binary run outside the source tree).
	RootEnv = "MESHPLANE_ROOT"
)

// Binaries are the executables `make k8s-bins` builds into BinDir.
var Binaries = []string{
	"etcd",
	"kube-apiserver",
	"kube-controller-manager",
	"kube-scheduler",
	"kwok",
	"kwokctl",
}

// ModuleRoot returns the directory holding the go.mod of the main module
// (github.com/meshplane/meshplane), walking up from the working directory. Other
// modules on the way (such as the tool modules under hack/tools) are skipped.
func ModuleRoot() (string, error) {
	if root := os.Getenv(RootEnv); root != "" {
		if ok, err := isModuleRoot(root); err != nil || !ok {
			return "", fmt.Errorf("%s=%s is not the root of module %s", RootEnv, root, ModulePath)
		}
		return filepath.Abs(root)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		ok, err := isModuleRoot(dir)
		if err != nil {
			return "", err
		}
		if ok {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in %s or any parent directory (set %s)", ModulePath, wd, RootEnv)
		}
		dir = parent
	}
}

// isModuleRoot says whether dir/go.mod declares ModulePath.
func isModuleRoot(dir string) (bool, error) {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == ModulePath, nil
		}
	}
	return false, s.Err()
}

// BinDir returns <module root>/bin/k8s/<KubeVersion>, or an error telling you to
// run `make k8s-bins` when any of Binaries is missing there.
func BinDir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s", KubeVersion)
	if err := checkBinaries(dir, Binaries...); err != nil {
		return "", err
	}
	return dir, nil
}

// Binary returns the path of one of Binaries, or an error telling you to run
// `make k8s-bins` when it has not been built. Unlike BinDir it only needs that
// one binary, so envtest works while kwok is still building.
func Binary(name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s", KubeVersion)
	if err := checkBinaries(dir, name); err != nil {
		return "", err
	}
	return filepath.Join(dir, name), nil
}

func checkBinaries(dir string, names ...string) error {
	var missing []string
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing Kubernetes test binaries %s in %s: run `make k8s-bins` (or hack/k8s-bins.sh) first",
			strings.Join(missing, ", "), dir)
	}
	return nil
}

// CRDDir returns <module root>/config/crd/bases, where controller-gen writes the
// Meshplane CRDs.
func CRDDir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config", "crd", "bases"), nil
}
