package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps failures instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errors = append(r.errors, f) }
func (r *recorder) Fatalf(f string, a ...any) { r.errors = append(r.errors, f) }

func TestCheck(t *testing.T) {
	t.Setenv("UPDATE_GOLDEN", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "a.golden")
	if err := os.WriteFile(path, []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	Check(r, path, []byte("one\ntwo\n"))
	if len(r.errors) != 0 {
		t.Errorf("equal output failed: %v", r.errors)
	}
	Check(r, path, []byte("one\nthree\n"))
	if len(r.errors) != 1 {
		t.Errorf("different output passed")
	}
	Check(r, filepath.Join(dir, "missing.golden"), nil)
	if len(r.errors) != 2 {
		t.Errorf("a missing file passed")
	}

	t.Setenv("UPDATE_GOLDEN", "1")
	Check(t, filepath.Join(dir, "sub", "b.golden"), []byte("new\n"))
	if b, err := os.ReadFile(filepath.Join(dir, "sub", "b.golden")); err != nil || string(b) != "new\n" {
		t.Errorf("update wrote %q, %v", b, err)
	}
}

func TestDiff(t *testing.T) {
	d := Diff("a\nb\nc", "a\nx\nc\nd")
	if !strings.Contains(d, "line 2:\n  want: b\n  got:  x") || !strings.Contains(d, "line 4:") || strings.Contains(d, "line 1:") {
		t.Errorf("diff:\n%s", d)
	}
}
