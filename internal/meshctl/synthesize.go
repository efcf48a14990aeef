package meshctl

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Files describe a cluster's desired state; meshd sees what the cluster makes of it. Before
// building a World from files, meshctl adds what the API server and Kubernetes' controllers
// would have added, deterministically, so that the same files always render the same output:
//
//   - Services without spec.clusterIP get one from 10.96.0.0/16, in namespace/name order
//     (10.96.0.1, 10.96.0.2, ...), skipping addresses the input already uses. Headless
//     ("None") and ExternalName Services get none.
//   - Every Deployment without a Pod of its own in the input (a Pod in its namespace that its
//     selector matches) runs spec.replicas Pods (default 1), named <deployment>-<i> for
//     i = 0, 1, ..., with the template's labels, service account and containers. The n-th
//     Deployment in namespace/name order (n = 1, 2, ...) gets the addresses 10.244.<n>.<i+1>.
//     At most 254 Deployments and 254 replicas each are synthesized.
//   - Pods in the input without status.podIP get 10.244.0.<m> (m = 1, 2, ... in namespace/name
//     order): a Pod without an address is not a workload.
//   - Every Service with a selector and no EndpointSlice in the input (labelled
//     kubernetes.io/service-name) gets EndpointSlices with the Pods it selects as ready endpoints,
//     one slice per distinct port mapping, as the EndpointSlice controller makes them. A port's
//     targetPort is a number, a container port's name (a Pod without that name has no endpoint
//     for that port), or unset (the Service port).
//
// Input objects are never modified: those that change are copied.

// Synthetic address ranges; see above.
const (
	serviceIPPrefix = "10.96."
	podIPPrefix     = "10.244."
	// maxSynthesized bounds Deployments and replicas: one octet each, without 0 and 255.
	maxSynthesized = 254
)

// SyntheticSliceManager is the endpointslice.kubernetes.io/managed-by label of the
// EndpointSlices meshctl makes.
const SyntheticSliceManager = "meshctl"

// simulatedCluster is the input as a cluster would hold it.
type simulatedCluster struct {
	// Services, EndpointSlices and Pods, input ones first (completed where needed), in
	// namespace/name order within each kind.
	Services []*corev1.Service
	Slices   []*discoveryv1.EndpointSlice
	Pods     []*corev1.Pod
	// DeploymentPods are each Deployment's Pods ("namespace/name" of the Deployment), those of
	// the input or the synthesized ones, sorted by name.
	DeploymentPods map[string][]*corev1.Pod
	// Notes say what was synthesized, one line each, for the user.
	Notes []string
}

// simulateCluster completes Services, EndpointSlices, Deployments and Pods read from files
// with what a cluster would add to them; see the comment at the top of this file. Objects
// of other types are ignored.
func simulateCluster(objects []runtime.Object) (*simulatedCluster, error) {
	var (
		services    []*corev1.Service
		inputSlices []*discoveryv1.EndpointSlice
		deployments []*appsv1.Deployment
		pods        []*corev1.Pod
	)
	for _, o := range objects {
		switch o := o.(type) {
		case *corev1.Service:
			services = append(services, o)
		case *discoveryv1.EndpointSlice:
			inputSlices = append(inputSlices, o)
		case *appsv1.Deployment:
			deployments = append(deployments, o)
		case *corev1.Pod:
			pods = append(pods, o)
		}
	}
	sortByKey(services)
	sortByKey(inputSlices)
	sortByKey(deployments)
	sortByKey(pods)

	c := &simulatedCluster{DeploymentPods: map[string][]*corev1.Pod{}}
	c.Services = withClusterIPs(services)
	c.Pods = withPodIPs(pods)
	if n := countChanged(pods, c.Pods); n > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("gave %s without status.podIP an address in %s0.0/24", plural(n, "Pod"), podIPPrefix))
	}
	if n := countChanged(services, c.Services); n > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("gave %s without spec.clusterIP an address in %s0.0/16", plural(n, "Service"), serviceIPPrefix))
	}

	var synthesized []*corev1.Pod
	for i, d := range deployments {
		key := objectKey(d)
		selector := deploymentSelector(d)
		own := slices.DeleteFunc(slices.Clone(c.Pods), func(p *corev1.Pod) bool {
			return p.Namespace != d.Namespace || !selector.Matches(labels.Set(p.Labels))
		})
		if len(own) > 0 {
			c.DeploymentPods[key] = own
			continue
		}
		if i >= maxSynthesized {
			return nil, fmt.Errorf("meshctl synthesizes Pods for at most %d Deployments; give the Pods of the others in the input", maxSynthesized)
		}
		replicas := 1
		if r := d.Spec.Replicas; r != nil {
			replicas = int(*r)
		}
		if replicas > maxSynthesized {
			c.Notes = append(c.Notes, fmt.Sprintf("Deployment %s: synthesized %d of its %d replicas", key, maxSynthesized, replicas))
			replicas = maxSynthesized
		}
		for r := range replicas {
			pod := deploymentPod(d, r, fmt.Sprintf("%s%d.%d", podIPPrefix, i+1, r+1))
			c.DeploymentPods[key] = append(c.DeploymentPods[key], pod)
			synthesized = append(synthesized, pod)
		}
	}
	if len(synthesized) > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("synthesized %s of Deployments, with addresses in %s0.0/16", plural(len(synthesized), "Pod"), podIPPrefix))
	}
	c.Pods = append(c.Pods, synthesized...)
	sortByKey(c.Pods)

	hasSlices := map[string]bool{}
	for _, s := range inputSlices {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			hasSlices[s.Namespace+"/"+name] = true
		}
	}
	c.Slices = inputSlices
	made := 0
	for _, svc := range c.Services {
		if hasSlices[objectKey(svc)] || len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		made++
		c.Slices = append(c.Slices, endpointSlices(svc, c.Pods)...)
	}
	if made > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("synthesized the EndpointSlices of %s", plural(made, "Service")))
	}
	return c, nil
}

// objects are the cluster's Services, EndpointSlices and Pods for discovery.BuildWorld.
func (c *simulatedCluster) objects() []runtime.Object {
	out := make([]runtime.Object, 0, len(c.Services)+len(c.Slices)+len(c.Pods))
	for _, s := range c.Services {
		out = append(out, s)
	}
	for _, s := range c.Slices {
		out = append(out, s)
	}
	for _, p := range c.Pods {
		out = append(out, p)
	}
	return out
}

// pod finds a Pod by namespace/name.
func (c *simulatedCluster) pod(key string) *corev1.Pod {
	for _, p := range c.Pods {
		if objectKey(p) == key {
			return p
		}
	}
	return nil
}

// withClusterIPs returns services (sorted) with cluster IPs assigned where a cluster would.
func withClusterIPs(services []*corev1.Service) []*corev1.Service {
	used := map[string]bool{}
	for _, s := range services {
		used[s.Spec.ClusterIP] = true
	}
	out := make([]*corev1.Service, len(services))
	next := 1
	for i, s := range services {
		out[i] = s
		if s.Spec.ClusterIP != "" || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		var ip string
		for {
			ip = fmt.Sprintf("%s%d.%d", serviceIPPrefix, next>>8, next&0xff)
			next++
			if !used[ip] {
				break
			}
		}
		s = s.DeepCopy()
		s.Spec.ClusterIP = ip
		s.Spec.ClusterIPs = []string{ip}
		out[i] = s
	}
	return out
}

// withPodIPs returns pods (sorted) with an address for those that have none.
func withPodIPs(pods []*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, len(pods))
	next := 1
	for i, p := range pods {
		out[i] = p
		if p.Status.PodIP != "" || next > maxSynthesized {
			continue
		}
		p = p.DeepCopy()
		ip := fmt.Sprintf("%s0.%d", podIPPrefix, next)
		next++
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		if p.Status.Phase == "" {
			p.Status.Phase = corev1.PodRunning
		}
		out[i] = p
	}
	return out
}

// countChanged counts the objects simulateCluster replaced with completed copies.
func countChanged[T any](before, after []*T) int {
	n := 0
	for i := range before {
		if before[i] != after[i] {
			n++
		}
	}
	return n
}

// deploymentSelector is the Deployment's selector, or its template's labels when the selector
// is missing or invalid (the API server would have refused such a Deployment; rendering
// still needs its Pods).
func deploymentSelector(d *appsv1.Deployment) labels.Selector {
	if d.Spec.Selector != nil {
		if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil && !s.Empty() {
			return s
		}
	}
	return labels.SelectorFromSet(d.Spec.Template.Labels)
}

// deploymentPod is replica r of d, running at ip.
func deploymentPod(d *appsv1.Deployment, r int, ip string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      d.Name + "-" + strconv.Itoa(r),
			Namespace: d.Namespace,
			Labels:    maps.Clone(d.Spec.Template.Labels),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name,
			}},
		},
		Spec: *d.Spec.Template.Spec.DeepCopy(),
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  ip,
			PodIPs: []corev1.PodIP{{IP: ip}},
		},
	}
}

// endpointSlices are the slices the EndpointSlice controller would make for svc from pods:
// the running Pods of its namespace that its selector matches, grouped by the ports they
// resolve, each group one slice.
func endpointSlices(svc *corev1.Service, pods []*corev1.Pod) []*discoveryv1.EndpointSlice {
	selector := labels.SelectorFromSet(svc.Spec.Selector)
	type group struct {
		ports     []discoveryv1.EndpointPort
		endpoints []discoveryv1.Endpoint
	}
	var groups []*group
	byPorts := map[string]*group{}
	for _, p := range pods {
		if p.Namespace != svc.Namespace || !selector.Matches(labels.Set(p.Labels)) || !runs(p) {
			continue
		}
		ports := endpointPorts(svc, p)
		key := portsKey(ports)
		g := byPorts[key]
		if g == nil {
			g = &group{ports: ports}
			byPorts[key] = g
			groups = append(groups, g)
		}
		g.endpoints = append(g.endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(podReady(p))},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name},
		})
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(groups))
	for i, g := range groups {
		name := svc.Name + "-" + SyntheticSliceManager
		if i > 0 {
			name += "-" + strconv.Itoa(i+1)
		}
		out = append(out, &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: svc.Namespace,
				Labels: map[string]string{
					discoveryv1.LabelServiceName: svc.Name,
					discoveryv1.LabelManagedBy:   SyntheticSliceManager,
				},
			},
			AddressType: addressType(g.endpoints[0].Addresses[0]),
			Endpoints:   g.endpoints,
			Ports:       g.ports,
		})
	}
	return out
}

// runs reports whether a Pod is an endpoint candidate: it has an address and has not finished.
func runs(p *corev1.Pod) bool {
	return p.Status.PodIP != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// podReady is false only when the Pod says so in its Ready condition: Pods written in files
// usually have no status, and meshctl treats them as running and ready.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status != corev1.ConditionFalse
		}
	}
	return true
}

// endpointPorts resolves svc's ports on pod p. A named targetPort the Pod does not declare
// leaves that port out, as the EndpointSlice controller does.
func endpointPorts(svc *corev1.Service, p *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port, ok := targetPort(sp, p)
		if !ok {
			continue
		}
		protocol := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
		out = append(out, discoveryv1.EndpointPort{
			Name:        ptr(sp.Name),
			Port:        ptr(port),
			Protocol:    &protocol,
			AppProtocol: sp.AppProtocol,
		})
	}
	return out
}

func targetPort(sp corev1.ServicePort, p *corev1.Pod) (int32, bool) {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal && cmp.Or(cp.Protocol, corev1.ProtocolTCP) == cmp.Or(sp.Protocol, corev1.ProtocolTCP) {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal, true
	}
	return sp.Port, true
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = *p.Name + "=" + strconv.Itoa(int(*p.Port))
	}
	return strings.Join(parts, ",")
}

func addressType(ip string) discoveryv1.AddressType {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		return discoveryv1.AddressTypeIPv6
	}
	return discoveryv1.AddressTypeIPv4
}

// namespacedObject is any object with a namespace and a name.
type namespacedObject interface {
	GetNamespace() string
	GetName() string
}

func objectKey(o namespacedObject) string { return o.GetNamespace() + "/" + o.GetName() }

// sortByKey sorts objects by namespace, then name.
func sortByKey[T namespacedObject](objects []T) {
	slices.SortStableFunc(objects, func(a, b T) int {
		return cmp.Or(strings.Compare(a.GetNamespace(), b.GetNamespace()), strings.Compare(a.GetName(), b.GetName()))
	})
}

func ptr[T any](v T) *T { return &v }
