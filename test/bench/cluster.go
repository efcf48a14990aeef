package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/test/harness"
)

// startEnvtest starts etcd and kube-apiserver like harness.StartEnvtest, but
// with a service CIDR large enough for the benchmark's Services (envtest's
// default, 10.0.0.0/24, holds 254 ClusterIPs) and no CRDs: the only ones the
// benchmark needs are Istio's, which installIstioCRDs installs.
func startEnvtest() (*envtest.Environment, *rest.Config, error) {
	apiServer, err := harness.Binary("kube-apiserver")
	if err != nil {
		return nil, nil, err
	}
	etcd, err := harness.Binary("etcd")
	if err != nil {
		return nil, nil, err
	}
	env := &envtest.Environment{Scheme: harness.NewScheme(), ControlPlaneStartTimeout: 2 * time.Minute}
	env.ControlPlane.GetAPIServer().Path = apiServer
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd}
	cfg, err := env.Start()
	if err != nil {
		if stopErr := env.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, nil, fmt.Errorf("starting envtest (%s, %s): %w", apiServer, etcd, err)
	}
	return env, cfg, nil
}

// kubeconfig is what the control-plane child needs of the rest config.
type kubeconfig struct {
	Host, ServerName, BearerToken string
	CAData, CertData, KeyData     []byte
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	b, err := json.Marshal(kubeconfig{
		Host: cfg.Host, ServerName: cfg.ServerName, BearerToken: cfg.BearerToken,
		CAData: cfg.CAData, CertData: cfg.CertData, KeyData: cfg.KeyData,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func readKubeconfig(path string) (*rest.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k kubeconfig
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	return &rest.Config{
		Host: k.Host, BearerToken: k.BearerToken,
		TLSClientConfig: rest.TLSClientConfig{ServerName: k.ServerName, CAData: k.CAData, CertData: k.CertData, KeyData: k.KeyData},
		QPS:             1000, Burst: 2000,
	}, nil
}

// world names the benchmark's objects.
type world struct {
	services, namespaces int
}

func (w world) namespace(i int) string { return fmt.Sprintf("bench-%02d", i%w.namespaces) }
func (w world) service(i int) string   { return fmt.Sprintf("svc-%04d", i) }
func (w world) fqdn(i int) string {
	return w.service(i) + "." + w.namespace(i) + ".svc.cluster.local"
}

// podIP is the j-th endpoint of service i: 10.128.0.0/9, 16 addresses per
// service (3 at start, the rest for added endpoints).
func podIP(i, j int) string {
	base := netip.MustParseAddr("10.128.0.0").As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(i)*16 + uint32(j) + 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

var servicePorts = []corev1.ServicePort{
	{Name: "http-web", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
	{Name: "grpc-api", Port: 9090, TargetPort: intstr.FromInt32(9090), Protocol: corev1.ProtocolTCP},
}

func serviceObject(w world, i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: w.service(i), Namespace: w.namespace(i)},
		Spec:       corev1.ServiceSpec{Ports: servicePorts},
	}
}

// sliceObject is service i's EndpointSlice with endpoints 0..n-1, as the
// EndpointSlice controller would write it for ready pods.
func sliceObject(w world, i, n int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: w.service(i) + "-abc", Namespace: w.namespace(i),
			Labels: map[string]string{discoveryv1.LabelServiceName: w.service(i)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http-web"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)},
			{Name: ptr.To("grpc-api"), Port: ptr.To(int32(9090)), Protocol: ptr.To(corev1.ProtocolTCP)},
		},
	}
	for j := range n {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{podIP(i, j)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		})
	}
	return s
}

// populate creates the namespaces, then every Service and its EndpointSlice
// with `workers` parallel writers.
func populate(ctx context.Context, c client.Client, w world, workers int) error {
	for i := range w.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.namespace(i)}}
		if err := c.Create(ctx, ns); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns.Name, err)
		}
	}
	jobs := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := c.Create(ctx, serviceObject(w, i)); err != nil {
					errc <- fmt.Errorf("creating Service %s/%s: %w", w.namespace(i), w.service(i), err)
					return
				}
				if err := c.Create(ctx, sliceObject(w, i, 3)); err != nil {
					errc <- fmt.Errorf("creating EndpointSlice of %s/%s: %w", w.namespace(i), w.service(i), err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range w.services {
		select {
		case jobs <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
