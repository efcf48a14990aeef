package listen

import (
	"strings"
	"testing"
)

func TestOnce(t *testing.T) {
	o := &Once{Address: "127.0.0.1:0", What: "test"}
	if o.Addr() != nil {
		t.Fatal("bound before Listen")
	}
	l1, err := o.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	l2, err := o.Listen()
	if err != nil || l2 != l1 || o.Addr().String() != l1.Addr().String() {
		t.Fatalf("second Listen: %v, %v", l2, err)
	}
	taken := &Once{Address: l1.Addr().String(), What: "monitoring"}
	if _, err := taken.Listen(); err == nil || !strings.Contains(err.Error(), "monitoring address") {
		t.Errorf("a taken port: %v", err)
	}
}
