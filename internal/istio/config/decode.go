package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// istioKind describes how to decode one Istio kind.
type istioKind struct {
	group string
	// versions are the served versions, v1 first; every one shares the spec schema.
	versions  []string
	newObject func() KubernetesObject
	spec      protoreflect.MessageDescriptor
}

// The versions Istio serves, per group; objects are decoded into the v1 types.
var (
	networkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
	securityVersions   = []string{"v1", "v1beta1"}
)

// istioKinds, by kind: no kind name is used by two Istio groups.
var istioKinds = map[string]istioKind{
	KindVirtualService: {
		group: IstioNetworkingGroup, versions: networkingVersions,
		newObject: func() KubernetesObject { return &networkingv1.VirtualService{} },
		spec:      (&networkingv1alpha3.VirtualService{}).ProtoReflect().Descriptor(),
	},
	KindDestinationRule: {
		group: IstioNetworkingGroup, versions: networkingVersions,
		newObject: func() KubernetesObject { return &networkingv1.DestinationRule{} },
		spec:      (&networkingv1alpha3.DestinationRule{}).ProtoReflect().Descriptor(),
	},
	KindGateway: {
		group: IstioNetworkingGroup, versions: networkingVersions,
		newObject: func() KubernetesObject { return &networkingv1.Gateway{} },
		spec:      (&networkingv1alpha3.Gateway{}).ProtoReflect().Descriptor(),
	},
	KindServiceEntry: {
		group: IstioNetworkingGroup, versions: networkingVersions,
		newObject: func() KubernetesObject { return &networkingv1.ServiceEntry{} },
		spec:      (&networkingv1alpha3.ServiceEntry{}).ProtoReflect().Descriptor(),
	},
	KindSidecar: {
		group: IstioNetworkingGroup, versions: networkingVersions,
		newObject: func() KubernetesObject { return &networkingv1.Sidecar{} },
		spec:      (&networkingv1alpha3.Sidecar{}).ProtoReflect().Descriptor(),
	},
	KindPeerAuthentication: {
		group: IstioSecurityGroup, versions: securityVersions,
		newObject: func() KubernetesObject { return &securityv1.PeerAuthentication{} },
		spec:      (&securityv1beta1.PeerAuthentication{}).ProtoReflect().Descriptor(),
	},
	KindAuthorizationPolicy: {
		group: IstioSecurityGroup, versions: securityVersions,
		newObject: func() KubernetesObject { return &securityv1.AuthorizationPolicy{} },
		spec:      (&securityv1beta1.AuthorizationPolicy{}).ProtoReflect().Descriptor(),
	},
	KindRequestAuthentication: {
		group: IstioSecurityGroup, versions: securityVersions,
		newObject: func() KubernetesObject { return &securityv1.RequestAuthentication{} },
		spec:      (&securityv1beta1.RequestAuthentication{}).ProtoReflect().Descriptor(),
	},
}

// istioKindOf returns how to decode an object written with apiVersion and kind, if it is an
// Istio kind of this package (in any version of its group).
func istioKindOf(apiVersion, kind string) (istioKind, bool) {
	k, ok := istioKinds[kind]
	group, _ := splitAPIVersion(apiVersion)
	return k, ok && group == k.group
}

// notServedMessage says which versions of kind are served instead of apiVersion.
func (k istioKind) notServedMessage(apiVersion, kind string) string {
	others := k.versions[1:]
	verb := "is"
	if len(others) > 1 {
		verb = "are"
	}
	return fmt.Sprintf("%s %s is not served; use %s/%s (%s %s accepted too)",
		apiVersion, kind, k.group, k.versions[0], joinAnd(others), verb)
}

// joinAnd renders "a", "a and b", "a, b and c".
func joinAnd(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// kubernetesKind describes how to decode one Kubernetes kind.
type kubernetesKind struct {
	newObject  func() KubernetesObject
	namespaced bool
}

var kubernetesKinds = map[string]kubernetesKind{
	"v1/" + KindService:                        {func() KubernetesObject { return &corev1.Service{} }, true},
	"v1/" + KindPod:                            {func() KubernetesObject { return &corev1.Pod{} }, true},
	"v1/" + KindNamespace:                      {func() KubernetesObject { return &corev1.Namespace{} }, false},
	"apps/v1/" + KindDeployment:                {func() KubernetesObject { return &appsv1.Deployment{} }, true},
	"discovery.k8s.io/v1/" + KindEndpointSlice: {func() KubernetesObject { return &discoveryv1.EndpointSlice{} }, true},
}

// decoder decodes the objects of one document.
type decoder struct {
	file   string
	doc    document
	opts   Options
	lines  map[string]int
	result Result
}

func decodeDocument(file string, doc document, opts Options) *Result {
	d := &decoder{file: file, doc: doc, opts: opts}
	docSource := Source{File: file, Line: doc.contentLine()}

	// Strict: a key written twice is an error for kubectl too, and which one wins is not obvious.
	// This parser goes first because its error messages carry the better line numbers.
	data, err := sigsyaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		d.parseProblem(err)
		return &d.result
	}
	// A second parse keeps the nodes, whose positions give every field its line.
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(doc.data, &root); err != nil {
		d.parseProblem(err)
		return &d.result
	}
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return &d.result // empty or comment-only document
	}
	d.lines = indexLines(&root, doc.firstLine-1)

	var header typeHeader
	if err := json.Unmarshal(data, &header); err != nil {
		d.result.Problems = append(d.result.Problems, Problem{
			Source: docSource, Reason: ReasonParse, Message: "a document must be an object with apiVersion and kind",
		})
		return &d.result
	}
	if header.APIVersion == "v1" && header.Kind == "List" {
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(data, &list); err != nil {
			d.result.Problems = append(d.result.Problems, Problem{
				Source: docSource, Reason: ReasonParse, Field: "items", Message: "items must be a list of objects",
			})
			return &d.result
		}
		for i, item := range list.Items {
			d.decodeObject(item, []string{"items", strconv.Itoa(i)})
		}
		return &d.result
	}
	d.decodeObject(data, nil)
	return &d.result
}

type typeHeader struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// yamlLineNumber finds the line numbers YAML parsers put in their messages, which count from the
// start of the document rather than of the file.
var yamlLineNumber = regexp.MustCompile(`line (\d+)`)

func (d *decoder) parseProblem(err error) {
	line := d.doc.contentLine()
	message := yamlLineNumber.ReplaceAllStringFunc(err.Error(), func(match string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(match, "line "))
		absolute := d.doc.firstLine - 1 + n
		line = absolute
		return fmt.Sprintf("line %d", absolute)
	})
	d.result.Problems = append(d.result.Problems, Problem{
		Source: Source{File: d.file, Line: line}, Reason: ReasonParse, Message: message,
	})
}

// decodeObject decodes one object; prefix is its path within the document ("items", "3" for an
// entry of a List).
func (d *decoder) decodeObject(data []byte, prefix []string) {
	source := Source{File: d.file, Line: d.lineOf(prefix, nil)}
	if len(prefix) == 0 {
		source.Line = d.doc.contentLine()
	}
	var header typeHeader
	if err := json.Unmarshal(data, &header); err != nil || header.APIVersion == "" || header.Kind == "" {
		d.result.Problems = append(d.result.Problems, Problem{
			Source: source, Reason: ReasonParse, Message: "an object must be a mapping with apiVersion and kind",
		})
		return
	}
	p := &objectProblems{decoder: d, source: source, prefix: prefix, header: header}

	var object KubernetesObject
	if kind, ok := istioKindOf(header.APIVersion, header.Kind); ok {
		if _, version := splitAPIVersion(header.APIVersion); !slices.Contains(kind.versions, version) {
			p.add(ReasonSchema, "apiVersion", kind.notServedMessage(header.APIVersion, header.Kind))
			return
		}
		object = decodeIstio(kind, data, p)
	} else if kind, ok := kubernetesKinds[header.APIVersion+"/"+header.Kind]; ok {
		object = decodeKubernetes(kind, data, p)
	} else {
		object = decodeUnknown(data, p)
	}
	if object == nil {
		return
	}
	if getsDefaultNamespace(header) && object.GetNamespace() == "" {
		object.SetNamespace(d.opts.defaultNamespace())
	}
	if object.GetName() == "" {
		p.add(ReasonSchema, "metadata.name", "required: every object needs a name")
	}
	d.result.Objects = append(d.result.Objects, Object{
		Source:     source,
		APIVersion: header.APIVersion,
		Kind:       header.Kind,
		Object:     object,
		fieldLines: d.lines,
		pathPrefix: prefix,
	})
}

// getsDefaultNamespace reports whether an object without a namespace is put in the default
// one: objects of the namespaced kinds this package knows. Unknown kinds are left as written,
// since their scope is not known.
func getsDefaultNamespace(header typeHeader) bool {
	if _, ok := istioKindOf(header.APIVersion, header.Kind); ok {
		return true
	}
	kind, ok := kubernetesKinds[header.APIVersion+"/"+header.Kind]
	return ok && kind.namespaced
}

// lineOf returns the line of path (relative to the object at prefix), or of the closest
// enclosing field written in the file, or the object's line.
func (d *decoder) lineOf(prefix []string, path []string) int {
	segments := append(append([]string(nil), prefix...), path...)
	for n := len(segments); n > 0; n-- {
		if line, ok := d.lines[strings.Join(segments[:n], pathSeparator)]; ok {
			return line
		}
	}
	return d.doc.contentLine()
}

// objectProblems records problems of one object, with their lines.
type objectProblems struct {
	decoder *decoder
	source  Source
	prefix  []string
	header  typeHeader
}

func (p *objectProblems) add(reason Reason, fieldPath, message string) {
	line := p.source.Line
	if fieldPath != "" {
		line = p.decoder.lineOf(p.prefix, splitFieldPath(fieldPath))
	}
	namespace := p.header.Metadata.Namespace
	if namespace == "" && getsDefaultNamespace(p.header) {
		namespace = p.decoder.opts.defaultNamespace()
	}
	p.decoder.result.Problems = append(p.decoder.result.Problems, Problem{
		Source:    Source{File: p.decoder.file, Line: line},
		Reason:    reason,
		Kind:      p.header.Kind,
		Namespace: namespace,
		Name:      p.header.Metadata.Name,
		Field:     fieldPath,
		Message:   message,
	})
}

func (p *objectProblems) addFieldErrors(errs field.ErrorList) {
	for _, err := range errs {
		p.add(ReasonSchema, err.Field, err.Detail)
	}
}

// istioTopLevelFields are the fields an Istio object may have; anything else is a typo (for
// example spec indented one level too little).
var istioTopLevelFields = []string{"apiVersion", "kind", "metadata", "spec", "status"}

func decodeIstio(kind istioKind, data []byte, p *objectProblems) KubernetesObject {
	var top map[string]json.RawMessage
	err := json.Unmarshal(data, &top)
	if err != nil {
		p.add(ReasonParse, "", err.Error())
		return nil
	}
	for _, key := range sortedKeys(top) {
		if !slices.Contains(istioTopLevelFields, key) {
			p.add(ReasonSchema, key, unknownFieldMessage(key, istioTopLevelFields))
			delete(top, key)
		}
	}
	if raw, ok := top["metadata"]; ok {
		checkStrict(raw, &metav1.ObjectMeta{}, field.NewPath("metadata"), p)
	}
	if raw, ok := top["spec"]; ok {
		var spec any
		decoder := json.NewDecoder(bytes.NewReader(raw))
		decoder.UseNumber()
		if err := decoder.Decode(&spec); err != nil {
			p.add(ReasonParse, "spec", err.Error())
			return nil
		}
		errs, usable := checkMessage(kind.spec, spec, field.NewPath("spec"))
		p.addFieldErrors(errs)
		if !usable {
			return nil
		}
		// checkMessage removed what it reported; decode the rest.
		if top["spec"], err = json.Marshal(spec); err != nil {
			p.add(ReasonParse, "spec", err.Error())
			return nil
		}
	}

	// Decode with Istio's own JSON decoding (as its clients do); the checks above have already
	// reported what it would silently accept. Status is output only, and ignored.
	delete(top, "status")
	trimmed, err := json.Marshal(top)
	if err != nil {
		p.add(ReasonParse, "", err.Error())
		return nil
	}
	object := kind.newObject()
	if err := json.Unmarshal(trimmed, object); err != nil {
		// Only reached for inputs the checks above already reported.
		p.add(ReasonSchema, "spec", err.Error())
		return nil
	}
	object.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: kind.group, Version: kind.versions[0], Kind: p.header.Kind})
	return object
}

func decodeKubernetes(kind kubernetesKind, data []byte, p *objectProblems) KubernetesObject {
	object := kind.newObject()
	if !checkStrict(data, object, nil, p) {
		return nil
	}
	return object
}

// checkStrict decodes data into into with Kubernetes' strict JSON decoding, reporting unknown
// and duplicate fields and type errors at their paths under base. It returns false when data
// could not be decoded at all.
func checkStrict(data []byte, into any, base *field.Path, p *objectProblems) bool {
	strictErrs, err := sigsjson.UnmarshalStrict(data, into)
	qualify := func(path string) string {
		switch {
		case base == nil:
			return path
		case path == "":
			return base.String()
		default:
			return base.String() + "." + path
		}
	}
	for _, strictErr := range strictErrs {
		path, message := "", strictErr.Error()
		var fieldErr sigsjson.FieldError
		if errors.As(strictErr, &fieldErr) {
			path = fieldErr.FieldPath()
		}
		switch {
		case strings.HasPrefix(message, "unknown field"):
			message = "unknown field"
		case strings.HasPrefix(message, "duplicate field"):
			message = "field written twice"
		}
		p.add(ReasonSchema, qualify(path), message)
	}
	if err != nil {
		path := ""
		var fieldErr sigsjson.FieldError
		if errors.As(err, &fieldErr) {
			path = fieldErr.FieldPath()
		}
		p.add(ReasonSchema, qualify(path), err.Error())
		return false
	}
	return true
}

func decodeUnknown(data []byte, p *objectProblems) KubernetesObject {
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(data); err != nil {
		p.add(ReasonParse, "", err.Error())
		return nil
	}
	p.add(ReasonUnknownKind, "", fmt.Sprintf("%s %s is not checked", p.header.APIVersion, p.header.Kind))
	return object
}

func splitAPIVersion(apiVersion string) (group, version string) {
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		return apiVersion[:i], apiVersion[i+1:]
	}
	return "", apiVersion
}

// indexLines maps every key and list entry of a YAML document to its line in the file (offset
// is the number of file lines before the document).
func indexLines(root *yamlv3.Node, offset int) map[string]int {
	lines := map[string]int{}
	var walk func(node *yamlv3.Node, path []string)
	walk = func(node *yamlv3.Node, path []string) {
		switch node.Kind {
		case yamlv3.DocumentNode:
			for _, child := range node.Content {
				walk(child, path)
			}
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(node.Content); i += 2 {
				key, value := node.Content[i], node.Content[i+1]
				child := append(slices.Clip(path), key.Value)
				lines[strings.Join(child, pathSeparator)] = key.Line + offset
				walk(value, child)
			}
		case yamlv3.SequenceNode:
			for i, item := range node.Content {
				child := append(slices.Clip(path), strconv.Itoa(i))
				lines[strings.Join(child, pathSeparator)] = item.Line + offset
				walk(item, child)
			}
		}
	}
	walk(root, nil)
	return lines
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}
