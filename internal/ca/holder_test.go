package ca

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestHolderRotatesIntermediate(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	first := newTestCA(t, "intermediate 1", root, nil)
	second := newTestCA(t, "intermediate 2", root, nil)
	id := mustIdentity(t, "cluster.local", "shop", "cart")
	ctx := context.Background()

	var h Holder
	if _, err := h.Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour); !errors.Is(err, ErrNoAuthority) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("empty holder: %v, want ErrNoAuthority (ErrUnavailable)", err)
	}
	if _, err := h.IssueServing([]string{"meshd"}, time.Hour); !errors.Is(err, ErrNoAuthority) {
		t.Fatalf("empty holder serving: %v, want ErrNoAuthority", err)
	}

	if err := h.Update(pluginBundle(first, root)); err != nil {
		t.Fatal(err)
	}
	gen := h.Generation()
	oldChain, err := h.Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old := parsePEMChain(t, oldChain)

	// The same bundle again (a resync) changes nothing.
	if err := h.Update(pluginBundle(first, root)); err != nil || h.Generation() != gen {
		t.Fatalf("same bundle: err %v, generation %d -> %d", err, gen, h.Generation())
	}

	// A broken bundle is refused and the current CA keeps signing.
	broken := pluginBundle(second, root)
	broken.CAKey = first.keyPEM
	err = h.Update(broken)
	var be *BundleError
	if !errors.As(err, &be) || be.Reason != ReasonKeyMismatch {
		t.Fatalf("broken bundle: %v, want KeyMismatch", err)
	}
	if h.Generation() != gen {
		t.Error("a refused bundle changed the generation")
	}
	stillChain, err := h.Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour)
	if err != nil {
		t.Fatalf("signing after a refused update: %v", err)
	}
	if still := parsePEMChain(t, stillChain); !still[1].Equal(first.cert) {
		t.Error("after a refused update, leaves are not signed by the last good intermediate")
	}

	// Rotate the intermediate under the same root.
	if err := h.Update(pluginBundle(second, root)); err != nil {
		t.Fatal(err)
	}
	if h.Generation() == gen {
		t.Error("rotation did not change the generation")
	}
	newChain, err := h.Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fresh := parsePEMChain(t, newChain)
	if !fresh[1].Equal(second.cert) {
		t.Fatalf("new leaf chains through %q, want the new intermediate", fresh[1].Subject)
	}
	if err := fresh[0].CheckSignatureFrom(second.cert); err != nil {
		t.Fatalf("new leaf not signed by the new intermediate: %v", err)
	}
	if err := fresh[0].CheckSignatureFrom(first.cert); err == nil {
		t.Fatal("new leaf verifies against the old intermediate")
	}
	roots := h.Authority().RootsPEM()
	verifyLeaf(t, fresh, roots)
	verifyLeaf(t, old, roots) // old leaves, with the chain they were issued with
}

// TestHolderSignsDuringUpdates runs signing and rotations concurrently (for
// the race detector): every signature must come from one of the CAs.
func TestHolderSignsDuringUpdates(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	bundles := []Bundle{pluginBundle(newTestCA(t, "a", root, nil), root), pluginBundle(newTestCA(t, "b", root, nil), root)}
	id := mustIdentity(t, "cluster.local", "ns", "sa")
	csr := csrFor(t, newP256(t), id)
	var h Holder
	if err := h.Update(bundles[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				chain, err := h.Sign(context.Background(), csr, id, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if len(chain) != 3 {
					errs <- errors.New("chain is not leaf, intermediate, root")
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if err := h.Update(bundles[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
