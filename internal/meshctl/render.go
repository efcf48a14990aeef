package meshctl

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshplane/meshplane/internal/discovery"
	"github.com/meshplane/meshplane/internal/istio/validation"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
	"github.com/meshplane/meshplane/internal/xds/generate"
	"github.com/meshplane/meshplane/internal/xds/server"
)

// Values of render's flags.
const (
	proxyEnvoy = "envoy"
	proxyGRPC  = "grpc"

	outputYAML = "yaml"
	outputJSON = "json"
)

// resourceTypes are the --type names, in RenderYAML's section names.
var resourceTypes = map[string]resourcev3.Type{
	"clusters":  resourcev3.ClusterType,
	"endpoints": resourcev3.EndpointType,
	"listeners": resourcev3.ListenerType,
	"routes":    resourcev3.RouteType,
}

type renderOptions struct {
	files      []string
	namespace  string
	workload   string
	gateway    string
	proxy      string
	output     string
	types      []string
	meshConfig string
}

func newRenderCommand() *cobra.Command {
	var o renderOptions
	cmd := &cobra.Command{
		Use:   "render -f FILE_OR_DIR [-f ...] [--workload NS/NAME | --gateway NS/NAME]",
		Short: "Print the xDS configuration meshd would push to a proxy",
		Long: `render reads the same files as analyze and prints the xDS resources (clusters, endpoints,
listeners, routes) that meshd would push to one proxy, built by meshd's own discovery and
generators, without a cluster.

The input is first checked as analyze checks it: when it has errors, they are printed on
standard error and nothing is rendered (exit code 1). Warnings are printed and rendering goes on.

The proxy:
  --workload NS/NAME  the sidecar (or, with --proxy grpc, the proxyless gRPC application) of a
                      Pod in the input, or of a Deployment's first replica
  --gateway NS/NAME   the Envoy gateway of a Pod or Deployment
  neither             a sidecar (or gRPC client) in the namespace of -n with no workload:
                      outbound configuration only

What a cluster adds to files is synthesized, deterministically: cluster IPs for Services
(10.96.0.0/16), spec.replicas Pods for every Deployment without Pods in the input
(10.244.<n>.<replica+1> for the n-th Deployment by namespace/name; addresses 10.244.0.x for
input Pods without one), and EndpointSlices with those Pods as ready endpoints for every
Service without EndpointSlices in the input. What was synthesized is said on standard error.

A resource that fails validation is reported on standard error and left out, with the
resources that depend on it, as meshd does; the exit code is then 1.

Output: YAML with one section per type (-o yaml, the form of the golden files), or JSON
keyed by type URL (-o json); resources sorted by name. Exit code: 0 when rendered, 1 when the
input has errors or a resource was left out, 2 when the input cannot be read or the flags
are wrong.`,
		Example: `  meshctl render -f bookinfo/ --workload default/productpage-v1
  meshctl render -f bookinfo/ --workload default/reviews-v2 --proxy grpc --type routes
  meshctl render -f bookinfo/ -f gateway.yaml --gateway istio-system/istio-ingressgateway -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	flags := cmd.Flags()
	flags.StringArrayVarP(&o.files, "filename", "f", nil, `file or directory to read, or "-" for standard input (repeatable)`)
	flags.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that do not name one, of --workload/--gateway without one, and of the proxy without either")
	flags.StringVar(&o.workload, "workload", "", "render for the proxy of this Pod or Deployment (namespace/name)")
	flags.StringVar(&o.gateway, "gateway", "", "render for this gateway Pod or Deployment (namespace/name)")
	flags.StringVar(&o.proxy, "proxy", proxyEnvoy, "proxy kind: envoy (a sidecar, or a gateway with --gateway) or grpc (proxyless gRPC)")
	flags.StringVarP(&o.output, "output", "o", outputYAML, "output format: yaml or json")
	flags.StringSliceVar(&o.types, "type", nil, "resource types to print: clusters, endpoints, listeners, routes (default all)")
	flags.StringVar(&o.meshConfig, "mesh-config", "", "meshd's mesh config file (trustDomain, outboundTrafficPolicy, discoverySelectors); defaults otherwise")
	return cmd
}

func (o *renderOptions) run(stdin io.Reader, stdout, stderr io.Writer) error {
	if err := o.checkFlags(); err != nil {
		return err
	}
	res, dropped, err := o.render(stdin, stderr)
	if err != nil {
		return err
	}
	if err := o.write(stdout, res); err != nil {
		return err
	}
	if dropped > 0 {
		return &exitError{code: ExitFindings}
	}
	return nil
}

// render returns the resources meshd would push to the selected proxy and how many it would
// leave out, after printing findings, notes and left-out resources on stderr.
func (o *renderOptions) render(stdin io.Reader, stderr io.Writer) (xds.Resources, int, error) {
	mesh, err := o.mesh()
	if err != nil {
		return nil, 0, err
	}
	loaded, err := loadInput(o.files, o.namespace, stdin)
	if err != nil {
		return nil, 0, err
	}
	findings := validation.Check(loaded)
	if err := writeText(stderr, findings); err != nil {
		return nil, 0, err
	}
	if validation.HasErrors(findings) {
		fmt.Fprintln(stderr, summary(findings, len(loaded.Objects))+" Nothing rendered: fix the errors first.")
		return nil, 0, &exitError{code: ExitFindings}
	}

	objects := make([]runtime.Object, 0, len(loaded.Objects))
	for i := range loaded.Objects {
		objects = append(objects, loaded.Objects[i].Object)
	}
	cluster, err := simulateCluster(objects)
	if err != nil {
		return nil, 0, err
	}
	for _, note := range cluster.Notes {
		fmt.Fprintln(stderr, "Note: "+note+".")
	}
	world, err := discovery.BuildWorld(discovery.Options{Mesh: mesh.model, DiscoverySelectors: mesh.selectors},
		worldObjects(objects, cluster)...)
	if err != nil {
		return nil, 0, err
	}
	proxy, description, err := o.selectProxy(world, cluster)
	if err != nil {
		return nil, 0, err
	}
	fmt.Fprintln(stderr, "Rendering for "+description+".")
	if proxy.Type == model.ProxyGRPC {
		// Reported, not silently dropped: what this client's routes and
		// clusters leave out of the configuration that applies to it.
		for _, u := range generate.GRPCUnsupported(world, proxy.Namespace) {
			fmt.Fprintf(stderr, "Not honoured by proxyless gRPC: %s %s/%s %s: %s\n", u.Kind, u.Namespace, u.Name, u.Field, u.Message)
		}
	}

	res, err := generate.Generate(world, proxy)
	if err != nil {
		return nil, 0, err
	}
	// What meshd's xDS server would serve: the same checks, drops and
	// repairs (server.Check).
	pushed, dropped, err := server.Check(res, generate.ValidateResource)
	if err != nil {
		return nil, 0, err
	}
	for _, d := range dropped {
		fmt.Fprintln(stderr, "Left out (meshd would not push it): "+d)
	}
	return pushed, len(dropped), nil
}

func (o *renderOptions) checkFlags() error {
	if len(o.files) == 0 {
		return fmt.Errorf(`nothing to render: give files or directories with -f (or "-f -" for standard input)`)
	}
	if o.output != outputYAML && o.output != outputJSON {
		return fmt.Errorf("unknown output format %q: use yaml or json", o.output)
	}
	if o.proxy != proxyEnvoy && o.proxy != proxyGRPC {
		return fmt.Errorf("unknown proxy %q: use envoy or grpc", o.proxy)
	}
	if o.workload != "" && o.gateway != "" {
		return fmt.Errorf("--workload and --gateway name different proxies: give one of them")
	}
	if o.gateway != "" && o.proxy == proxyGRPC {
		return fmt.Errorf("--gateway renders an Envoy gateway; --proxy grpc is for applications (--workload)")
	}
	for _, t := range o.types {
		if _, ok := resourceTypes[t]; !ok {
			return fmt.Errorf("unknown resource type %q: use %s", t, strings.Join(slices.Sorted(maps.Keys(resourceTypes)), ", "))
		}
	}
	return nil
}

// meshSettings is what the mesh config contributes to the World.
type meshSettings struct {
	model     model.MeshConfig
	selectors []metav1.LabelSelector
}

// mesh reads --mesh-config as meshd reads it, or gives meshd's defaults. The translation to
// the model repeats internal/controlplane's meshModel, which is not exported.
func (o *renderOptions) mesh() (meshSettings, error) {
	cfg, err := meshd.ParseMeshConfig(nil, "")
	if o.meshConfig != "" {
		cfg, err = meshd.LoadMeshConfig(o.meshConfig, "")
	}
	if err != nil {
		return meshSettings{}, err
	}
	return meshSettings{
		model: model.MeshConfig{
			TrustDomain:      cfg.TrustDomain,
			DomainSuffix:     discovery.DefaultDomainSuffix,
			OutboundAllowAny: cfg.OutboundTrafficPolicy != meshd.OutboundRegistryOnly,
		},
		selectors: cfg.DiscoverySelectors,
	}, nil
}

// worldObjects are the objects discovery reads: the simulated cluster's Services,
// EndpointSlices and Pods, and the input's Namespaces and Istio networking objects.
// Deployments are represented by their Pods; other kinds meshd does not watch.
func worldObjects(input []runtime.Object, cluster *simulatedCluster) []runtime.Object {
	out := cluster.objects()
	for _, o := range input {
		switch o.(type) {
		case *corev1.Namespace, *istionetworking.VirtualService, *istionetworking.DestinationRule,
			*istionetworking.Gateway, *istionetworking.ServiceEntry, *istionetworking.Sidecar:
			out = append(out, o)
		}
	}
	return out
}

// selectProxy builds the proxy to render for, as meshd's xDS server identifies a proxy
// connecting from that Pod, and describes it for the user.
func (o *renderOptions) selectProxy(world *model.World, cluster *simulatedCluster) (*model.Proxy, string, error) {
	proxyType := model.ProxySidecar
	if o.proxy == proxyGRPC {
		proxyType = model.ProxyGRPC
	}
	ref := o.workload
	if o.gateway != "" {
		ref, proxyType = o.gateway, model.ProxyRouter
	}
	if ref == "" {
		id := fmt.Sprintf("%s~~meshctl.%s~%s.svc.%s", proxyType, o.namespace, o.namespace, world.Mesh.DomainSuffix)
		return &model.Proxy{ID: id, Type: proxyType, Namespace: o.namespace},
			fmt.Sprintf("a %s in namespace %s with no workload (no --workload or --gateway): outbound configuration only", proxyType, o.namespace), nil
	}
	key := ref
	if !strings.Contains(key, "/") {
		key = o.namespace + "/" + key
	}
	pod, origin := cluster.pod(key), "Pod "+key
	if pod == nil {
		pods := cluster.DeploymentPods[key]
		if len(pods) == 0 {
			return nil, "", fmt.Errorf("no Pod or Deployment %s in the input", key)
		}
		pod, origin = pods[0], "Deployment "+key
	}
	workload := world.Workload(pod.Namespace, pod.Name)
	if workload == nil {
		return nil, "", fmt.Errorf("%s is not a workload meshd knows (a finished Pod, or one outside the discovery selectors)", origin)
	}
	proxy := &model.Proxy{
		// Istio's node id form, which meshd's xDS server reads.
		ID:        fmt.Sprintf("%s~%s~%s.%s~%s.svc.%s", proxyType, workload.IP, pod.Name, pod.Namespace, pod.Namespace, world.Mesh.DomainSuffix),
		Type:      proxyType,
		Namespace: pod.Namespace,
		Pod:       pod.Name,
		IP:        workload.IP,
		Workload:  workload,
	}
	description := fmt.Sprintf("the %s of Pod %s/%s (%s)", proxyType, pod.Namespace, pod.Name, workload.IP)
	if origin != "Pod "+key {
		description += ", the first replica of " + origin
	}
	return proxy, description, nil
}

// sectionName is the --type name of an xDS type.
func sectionName(t resourcev3.Type) string {
	for name, typ := range resourceTypes {
		if typ == t {
			return name
		}
	}
	return t
}

// write prints the selected types of res.
func (o *renderOptions) write(w io.Writer, res xds.Resources) error {
	selected := res
	if len(o.types) > 0 {
		selected = xds.Resources{}
		for _, t := range o.types {
			selected[resourceTypes[t]] = res[resourceTypes[t]]
		}
	}
	var out []byte
	var err error
	if o.output == outputJSON {
		out, err = renderJSON(selected)
	} else {
		out, err = generate.RenderYAML(selected)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// renderJSON renders resources as one JSON object keyed by type URL, each a list sorted by
// name, every resource in protojson form with proto field names (as Envoy's config_dump).
// protojson's whitespace varies on purpose; indenting through encoding/json fixes it.
func renderJSON(res xds.Resources) ([]byte, error) {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	doc := make(map[string][]json.RawMessage, len(res))
	for t, rs := range res {
		sorted := slices.SortedFunc(slices.Values(rs), func(a, b types.Resource) int {
			return strings.Compare(generate.ResourceName(a), generate.ResourceName(b))
		})
		list := make([]json.RawMessage, 0, len(sorted))
		for _, r := range sorted {
			js, err := opts.Marshal(r.(proto.Message))
			if err != nil {
				return nil, fmt.Errorf("rendering %s %q: %w", sectionName(t), generate.ResourceName(r), err)
			}
			list = append(list, js)
		}
		doc[t] = list
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
