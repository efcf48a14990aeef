// Package harness starts the real Kubernetes parts Meshplane's tests and demo run
// on, built from source into bin/k8s/<version>/ by `make k8s-bins`:
//
//   - StartEnvtest: an API server and etcd (controller-runtime envtest) with the
//     Meshplane CRDs installed. No controllers, no nodes: for API validation and
//     controller tests that only need an API server.
//   - StartSimulatedCluster: a whole cluster through kwokctl's binary runtime
//     (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
//     controller), with a fake Node, so Deployments get scheduled and their pods
//     become Running and Ready without any container runtime.
//   - CountWrites: a rest.Config wrapper that counts the mutating requests made
//     through it, to prove steady state makes no writes and to simulate an
//     operator killed after its N-th write.
//
// Nothing here downloads anything: a missing binary is an error that tells you to
// run `make k8s-bins`, so tests fail rather than skip.
//
// Typical TestMain:
//
//	var cfg *rest.Config
//
//	func TestMain(m *testing.M) {
//		env, c, err := harness.StartEnvtest()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		cfg = c
//		code := m.Run()
//		if err := env.Stop(); err != nil { // always: it stops kube-apiserver and etcd
//			fmt.Fprintln(os.Stderr, err)
//		}
//		os.Exit(code)
//	}
//
// A simulated cluster, and proving an operator idle:
//
//	cluster, err := harness.StartSimulatedCluster(ctx, "e2e")
//	if err != nil {
//		t.Fatal(err)
//	}
//	t.Cleanup(func() { _ = cluster.Stop() }) // kwokctl delete cluster; no process left
//
//	counted, writes := harness.CountWrites(cluster.Config)
//	// ... run the operator with counted, wait until it has converged ...
//	writes.Reset()
//	time.Sleep(5 * time.Second)
//	if writes.Count() != 0 {
//		t.Fatalf("writes at steady state:\n%s", writes.Summary())
//	}
package harness
