package validation

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// clusterDomain is the DNS suffix of Kubernetes Services; Istio's default trust domain and DNS
// domain are both cluster.local.
const clusterDomain = "cluster.local"

// Options describe the mesh the objects are analysed for.
type Options struct {
	// RootNamespace is the mesh's root namespace (meshd's own): its policies without a selector
	// apply to the whole mesh. Empty when not known; then no policy is called mesh-wide.
	RootNamespace string
}

// Analyze is AnalyzeWith without knowing the mesh's root namespace.
func Analyze(objects []config.Object) []Finding { return AnalyzeWith(objects, Options{}) }

// AnalyzeWith reports problems that only show when objects are seen together: route
// destinations whose host matches no Service or ServiceEntry, subsets no DestinationRule
// defines, Gateways that do not exist, VirtualServices that compete for a host, subsets that
// select none of a Service's known workloads, and PeerAuthentications of which Istio applies
// only the oldest. It only knows the objects given: a reference to something that exists in a
// cluster but not in the input is reported too. A policy selector that matches none of the
// workloads given is not a finding: workloads may come later. Findings are sorted.
func AnalyzeWith(objects []config.Object, opts Options) []Finding {
	a := newAnalyzer(objects)
	a.rootNamespace = opts.RootNamespace
	for _, object := range a.virtualServices {
		a.virtualService(object)
	}
	a.conflictingVirtualServices()
	for _, object := range a.destinationRules {
		a.subsetWorkloads(object)
	}
	a.conflictingPeerAuthentications()
	SortFindings(a.findings)
	return a.findings
}

type analyzer struct {
	findings      []Finding
	rootNamespace string

	virtualServices     []*config.Object
	destinationRules    []*config.Object
	peerAuthentications []*config.Object
	// services by FQDN (name.namespace.svc.cluster.local).
	services map[string]*corev1.Service
	// serviceEntryHosts are the hosts of every ServiceEntry, qualified.
	serviceEntryHosts []string
	// gateways by "namespace/name".
	gateways map[string]bool
	// namespaces seen in the input, to tell "name.namespace" hosts from external names.
	namespaces map[string]bool
	// workloads are the pods and Deployment pod templates, by namespace.
	workloads map[string][]workload
}

// workload is a pod, or the pods a Deployment makes.
type workload struct {
	kind, name string
	labels     labels.Set
}

func newAnalyzer(objects []config.Object) *analyzer {
	a := &analyzer{
		services:   map[string]*corev1.Service{},
		gateways:   map[string]bool{},
		namespaces: map[string]bool{},
		workloads:  map[string][]workload{},
	}
	for i := range objects {
		object := &objects[i]
		if object.Namespace() != "" {
			a.namespaces[object.Namespace()] = true
		}
		switch o := object.Object.(type) {
		case *corev1.Namespace:
			a.namespaces[o.Name] = true
		case *corev1.Service:
			a.services[o.Name+"."+o.Namespace+".svc."+clusterDomain] = o
		case *corev1.Pod:
			a.workloads[o.Namespace] = append(a.workloads[o.Namespace], workload{config.KindPod, o.Name, o.Labels})
		case *appsv1.Deployment:
			a.workloads[o.Namespace] = append(a.workloads[o.Namespace], workload{config.KindDeployment, o.Name, o.Spec.Template.Labels})
		case *networkingv1.Gateway:
			a.gateways[o.Namespace+"/"+o.Name] = true
		case *networkingv1.VirtualService:
			a.virtualServices = append(a.virtualServices, object)
		case *networkingv1.DestinationRule:
			a.destinationRules = append(a.destinationRules, object)
		case *securityv1.PeerAuthentication:
			a.peerAuthentications = append(a.peerAuthentications, object)
		}
	}
	// ServiceEntries are qualified after all namespaces are known.
	for i := range objects {
		if entry, ok := objects[i].Object.(*networkingv1.ServiceEntry); ok {
			for _, host := range entry.Spec.Hosts {
				a.serviceEntryHosts = append(a.serviceEntryHosts, a.qualify(host, entry.Namespace))
			}
		}
	}
	return a
}

// qualify turns a host as written in an object of namespace into the name Istio's registry
// knows: "reviews" is reviews.<namespace>.svc.cluster.local, "reviews.prod" (when prod is a
// namespace in the input) is reviews.prod.svc.cluster.local, "reviews.prod.svc" gets the
// cluster domain; anything else (FQDNs, external names, wildcards) is used as written.
func (a *analyzer) qualify(host, namespace string) string {
	if strings.HasPrefix(host, "*") {
		return host
	}
	host = strings.TrimSuffix(host, ".")
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return host + "." + namespace + ".svc." + clusterDomain
	case len(parts) == 2 && a.namespaces[parts[1]]:
		return host + ".svc." + clusterDomain
	case len(parts) == 3 && parts[2] == "svc":
		return host + "." + clusterDomain
	default:
		return host
	}
}

// report adds a finding about object at path (nil: about the whole object).
func (a *analyzer) report(object *config.Object, code Code, path *field.Path, format string, args ...any) {
	fieldPath := ""
	if path != nil {
		fieldPath = path.String()
	}
	a.findings = append(a.findings, objectFinding(object, code, fieldPath, fmt.Sprintf(format, args...)))
}

func (a *analyzer) virtualService(object *config.Object) {
	vs := object.Object.(*networkingv1.VirtualService)
	spec := &vs.Spec
	specPath := field.NewPath("spec")

	for i, gateway := range spec.Gateways {
		a.gatewayReference(object, specPath.Child("gateways").Index(i), gateway)
	}
	for i, route := range spec.Http {
		path := specPath.Child("http").Index(i)
		for j, match := range route.GetMatch() {
			for k, gateway := range match.GetGateways() {
				a.gatewayReference(object, path.Child("match").Index(j).Child("gateways").Index(k), gateway)
			}
		}
		for j, destination := range route.GetRoute() {
			a.destination(object, path.Child("route").Index(j).Child("destination"), destination.GetDestination())
		}
		a.destination(object, path.Child("mirror"), route.GetMirror())
		for j, mirror := range route.GetMirrors() {
			a.destination(object, path.Child("mirrors").Index(j).Child("destination"), mirror.GetDestination())
		}
	}
	for i, route := range spec.Tls {
		path := specPath.Child("tls").Index(i)
		for j, match := range route.GetMatch() {
			for k, gateway := range match.GetGateways() {
				a.gatewayReference(object, path.Child("match").Index(j).Child("gateways").Index(k), gateway)
			}
		}
		for j, destination := range route.GetRoute() {
			a.destination(object, path.Child("route").Index(j).Child("destination"), destination.GetDestination())
		}
	}
	for i, route := range spec.Tcp {
		path := specPath.Child("tcp").Index(i)
		for j, match := range route.GetMatch() {
			for k, gateway := range match.GetGateways() {
				a.gatewayReference(object, path.Child("match").Index(j).Child("gateways").Index(k), gateway)
			}
		}
		for j, destination := range route.GetRoute() {
			a.destination(object, path.Child("route").Index(j).Child("destination"), destination.GetDestination())
		}
	}
}

// gatewayKey resolves a gateway reference made from namespace to "namespace/name": "ns/name",
// "name" (same namespace), or the legacy "name.namespace[.svc.cluster.local]".
func gatewayKey(reference, namespace string) string {
	if strings.Contains(reference, "/") {
		return reference
	}
	if name, rest, ok := strings.Cut(reference, "."); ok {
		gatewayNamespace, _, _ := strings.Cut(rest, ".")
		return gatewayNamespace + "/" + name
	}
	return namespace + "/" + reference
}

func (a *analyzer) gatewayReference(object *config.Object, path *field.Path, reference string) {
	if reference == meshGateway || reference == "" {
		return
	}
	if key := gatewayKey(reference, object.Namespace()); !a.gateways[key] {
		a.report(object, CodeReferencedGatewayNotFound, path, "Gateway %s is not defined in the input", key)
	}
}

func (a *analyzer) destination(object *config.Object, path *field.Path, destination *networkingv1alpha3.Destination) {
	if destination == nil || destination.Host == "" || strings.HasPrefix(destination.Host, "*") {
		return // missing or wildcard hosts are validation's business
	}
	host := a.qualify(destination.Host, object.Namespace())
	if !a.hostExists(host) {
		a.report(object, CodeDestinationHostNotFound, path.Child("host"),
			"host %q matches no Service (looked for %s) and no ServiceEntry host in the input", destination.Host, host)
		return
	}
	if destination.Subset == "" {
		return
	}
	rules := a.destinationRulesFor(host)
	var defined []string
	for _, rule := range rules {
		for _, subset := range rule.Object.(*networkingv1.DestinationRule).Spec.Subsets {
			if subset.GetName() == destination.Subset {
				return
			}
			defined = append(defined, subset.GetName())
		}
	}
	message := fmt.Sprintf("subset %q is not defined by any DestinationRule for host %s", destination.Subset, host)
	if len(rules) == 0 {
		message += " (there is none)"
	} else {
		slices.Sort(defined)
		message += fmt.Sprintf(" (defined: %s)", strings.Join(slices.Compact(defined), ", "))
	}
	a.report(object, CodeReferencedSubsetNotFound, path.Child("subset"), "%s", message)
}

func (a *analyzer) hostExists(host string) bool {
	if _, ok := a.services[host]; ok {
		return true
	}
	return slices.ContainsFunc(a.serviceEntryHosts, func(pattern string) bool { return hostCovers(pattern, host) })
}

// destinationRulesFor returns the DestinationRules that apply to host. As in Istio, a rule for
// exactly the host wins over rules whose wildcard host covers it.
func (a *analyzer) destinationRulesFor(host string) []*config.Object {
	var exact, wildcard []*config.Object
	for _, object := range a.destinationRules {
		ruleHost := a.qualify(object.Object.(*networkingv1.DestinationRule).Spec.Host, object.Namespace())
		switch {
		case ruleHost == host:
			exact = append(exact, object)
		case hostCovers(ruleHost, host):
			wildcard = append(wildcard, object)
		}
	}
	if len(exact) > 0 {
		return exact
	}
	return wildcard
}

// conflictingVirtualServices warns when several VirtualServices define the same host for the same
// gateway (or the mesh): Istio merges them, and which rule comes first is hard to predict.
func (a *analyzer) conflictingVirtualServices() {
	type claim struct {
		object *config.Object
		host   int // index in spec.hosts
	}
	claims := map[string][]claim{} // "scope host" -> VirtualServices
	for _, object := range a.virtualServices {
		spec := &object.Object.(*networkingv1.VirtualService).Spec
		scopes := []string{meshGateway}
		if len(spec.Gateways) > 0 {
			scopes = nil
			for _, gateway := range spec.Gateways {
				if gateway == meshGateway {
					scopes = append(scopes, meshGateway)
				} else {
					scopes = append(scopes, gatewayKey(gateway, object.Namespace()))
				}
			}
		}
		for i, host := range spec.Hosts {
			qualified := a.qualify(host, object.Namespace())
			for _, scope := range slices.Compact(slices.Sorted(slices.Values(scopes))) {
				key := scope + " " + qualified
				if n := len(claims[key]); n > 0 && claims[key][n-1].object == object {
					continue // the same VirtualService naming the host twice is validation's business
				}
				claims[key] = append(claims[key], claim{object, i})
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(claims)) {
		competing := claims[key]
		if len(competing) < 2 {
			continue
		}
		scope, host, _ := strings.Cut(key, " ")
		where := "the mesh"
		if scope != meshGateway {
			where = "Gateway " + scope
		}
		for _, c := range competing {
			var others []string
			for _, other := range competing {
				if other.object != c.object {
					others = append(others, fmt.Sprintf("%s (%s)", other.object.Ref(), other.object.Source))
				}
			}
			a.report(c.object, CodeConflictingVirtualServiceHosts, field.NewPath("spec", "hosts").Index(c.host),
				"host %s is also routed for %s by VirtualService %s; Istio merges them in an order that is hard to predict, so merge them into one",
				host, where, strings.Join(others, ", "))
		}
	}
}

// subsetWorkloads warns about subsets whose labels match none of the known workloads of the
// rule's Service. It says nothing when the input has no pods or Deployments of that Service.
func (a *analyzer) subsetWorkloads(object *config.Object) {
	rule := object.Object.(*networkingv1.DestinationRule)
	host := a.qualify(rule.Spec.Host, object.Namespace())
	service, ok := a.services[host]
	if !ok || len(service.Spec.Selector) == 0 {
		return
	}
	selector := labels.SelectorFromSet(service.Spec.Selector)
	var workloads []labels.Set
	for _, workload := range a.workloads[service.Namespace] {
		if selector.Matches(workload.labels) {
			workloads = append(workloads, workload.labels)
		}
	}
	if len(workloads) == 0 {
		return
	}
	for i, subset := range rule.Spec.Subsets {
		if subset == nil || len(subset.Labels) == 0 {
			continue
		}
		subsetSelector := labels.SelectorFromSet(subset.Labels)
		if !slices.ContainsFunc(workloads, func(workload labels.Set) bool { return subsetSelector.Matches(workload) }) {
			a.report(object, CodeSubsetSelectsNoWorkloads, field.NewPath("spec", "subsets").Index(i).Child("labels"),
				"subset %q selects %s, which none of the %d pods and Deployments of Service %s/%s in the input has",
				subset.Name, subsetSelector, len(workloads), service.Namespace, service.Name)
		}
	}
}

// conflictingPeerAuthentications warns about the PeerAuthentications Istio ignores: of several
// without a selector in one namespace (namespace-wide, or mesh-wide in the root namespace) it
// applies the oldest, and so it does of several with a selector for one workload. A selector
// policy is known to compete when it has the same labels as another, or when both select one of
// the workloads given.
func (a *analyzer) conflictingPeerAuthentications() {
	byNamespace := map[string][]*config.Object{}
	for _, object := range a.peerAuthentications {
		byNamespace[object.Namespace()] = append(byNamespace[object.Namespace()], object)
	}
	for _, namespace := range slices.Sorted(maps.Keys(byNamespace)) {
		policies := byNamespace[namespace]
		slices.SortStableFunc(policies, olderFirst)
		var wide []*config.Object
		selective := map[string][]*config.Object{} // by selector
		for _, object := range policies {
			matchLabels := object.Object.(*securityv1.PeerAuthentication).Spec.GetSelector().GetMatchLabels()
			if len(matchLabels) == 0 {
				wide = append(wide, object)
			} else {
				key := labels.SelectorFromSet(matchLabels).String()
				selective[key] = append(selective[key], object)
			}
		}
		scope := "namespace-wide PeerAuthentication of namespace " + namespace
		if namespace == a.rootNamespace {
			scope = "mesh-wide PeerAuthentication (root namespace " + namespace + ")"
		}
		if len(wide) > 1 {
			for _, ignored := range wide[1:] {
				a.report(ignored, CodeConflictingPeerAuthentications, nil,
					"%s is the oldest %s, so Istio applies it and ignores this one; merge them into one", describe(wide[0]), scope)
			}
		}

		// Of the selector policies, the first reason found for each one being ignored.
		ignoredBy := map[*config.Object]string{}
		for _, key := range slices.Sorted(maps.Keys(selective)) {
			same := selective[key]
			for _, ignored := range same[1:] {
				ignoredBy[ignored] = fmt.Sprintf("%s has the same selector and is older, so Istio applies it to those workloads and ignores this one",
					describe(same[0]))
			}
		}
		workloads := slices.SortedFunc(slices.Values(a.workloads[namespace]), func(x, y workload) int {
			return cmp.Or(cmp.Compare(x.kind, y.kind), cmp.Compare(x.name, y.name))
		})
		for _, w := range workloads {
			var applying []*config.Object
			for _, object := range policies {
				matchLabels := object.Object.(*securityv1.PeerAuthentication).Spec.GetSelector().GetMatchLabels()
				if len(matchLabels) > 0 && labels.SelectorFromSet(matchLabels).Matches(w.labels) {
					applying = append(applying, object)
				}
			}
			if len(applying) < 2 {
				continue
			}
			for _, ignored := range applying[1:] {
				if _, ok := ignoredBy[ignored]; !ok {
					ignoredBy[ignored] = fmt.Sprintf("%s also selects %s %s and is older, so Istio applies it there and ignores this one",
						describe(applying[0]), w.kind, w.name)
				}
			}
		}
		for _, object := range policies {
			if reason, ok := ignoredBy[object]; ok {
				a.report(object, CodeConflictingPeerAuthentications, field.NewPath("spec", "selector", "matchLabels"), "%s", reason)
			}
		}
	}
}

// olderFirst orders competing objects as Istio does: by creation time, then namespace and name.
func olderFirst(x, y *config.Object) int {
	return cmp.Or(
		x.Object.GetCreationTimestamp().Compare(y.Object.GetCreationTimestamp().Time),
		cmp.Compare(x.Namespace(), y.Namespace()),
		cmp.Compare(x.Name(), y.Name()),
	)
}

// describe names an object for messages: "Kind namespace/name", and where it was read from.
func describe(object *config.Object) string {
	text := object.Kind + " " + object.Ref()
	if source := object.Source.String(); source != "" {
		text += " (" + source + ")"
	}
	return text
}
