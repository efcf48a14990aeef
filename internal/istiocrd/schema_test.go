package istiocrd

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/anypb" // registers any.proto for the test descriptor
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/golden"
)

// testMessage builds, from a hand-made file descriptor, a message with one field
// of every shape the schema builder handles, so that each mapping is pinned
// here and not only through whatever Istio's protos happen to use.
func testMessage(t *testing.T) protoreflect.MessageDescriptor {
	t.Helper()
	const pkg = "meshplane.test"
	scalar := func(name string, number int32, typ descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), Number: proto.Int32(number), Type: typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		}
	}
	message := func(name string, number int32, typeName string) *descriptorpb.FieldDescriptorProto {
		f := scalar(name, number, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE)
		f.TypeName = proto.String(typeName)
		return f
	}
	repeated := func(f *descriptorpb.FieldDescriptorProto) *descriptorpb.FieldDescriptorProto {
		f.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		return f
	}
	inOneof := func(f *descriptorpb.FieldDescriptorProto, index int32) *descriptorpb.FieldDescriptorProto {
		f.OneofIndex = proto.Int32(index)
		return f
	}
	required := scalar("host_name", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING)
	required.Options = &descriptorpb.FieldOptions{}
	proto.SetExtension(required.Options, annotations.E_FieldBehavior,
		[]annotations.FieldBehavior{annotations.FieldBehavior_REQUIRED})
	mode := scalar("mode", 20, descriptorpb.FieldDescriptorProto_TYPE_ENUM)
	mode.TypeName = proto.String("." + pkg + ".Mode")
	optional := scalar("note", 40, descriptorpb.FieldDescriptorProto_TYPE_STRING)
	optional.Proto3Optional = proto.Bool(true)
	optional.OneofIndex = proto.Int32(1)

	file := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("meshplane/test/schema.proto"),
		Package: proto.String(pkg),
		Syntax:  proto.String("proto3"),
		Dependency: []string{
			"google/protobuf/duration.proto", "google/protobuf/struct.proto", "google/protobuf/any.proto",
			"google/protobuf/wrappers.proto", "google/api/field_behavior.proto",
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name:    proto.String("Mode"),
			Options: &descriptorpb.EnumOptions{AllowAlias: proto.Bool(true)},
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("UNSET"), Number: proto.Int32(0)},
				{Name: proto.String("FAST"), Number: proto.Int32(1)},
				{Name: proto.String("QUICK"), Number: proto.Int32(1)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Node"),
			Field: []*descriptorpb.FieldDescriptorProto{
				required,
				repeated(message("children", 2, "."+pkg+".Node")),
				repeated(message("by_port", 3, "."+pkg+".Node.ByPortEntry")),
				scalar("count32", 4, descriptorpb.FieldDescriptorProto_TYPE_INT32),
				scalar("port", 5, descriptorpb.FieldDescriptorProto_TYPE_UINT32),
				scalar("count64", 6, descriptorpb.FieldDescriptorProto_TYPE_INT64),
				scalar("ring_size", 7, descriptorpb.FieldDescriptorProto_TYPE_UINT64),
				scalar("ratio", 8, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE),
				scalar("enabled", 9, descriptorpb.FieldDescriptorProto_TYPE_BOOL),
				scalar("body", 10, descriptorpb.FieldDescriptorProto_TYPE_BYTES),
				repeated(scalar("tags", 11, descriptorpb.FieldDescriptorProto_TYPE_STRING)),
				mode,
				message("timeout", 21, ".google.protobuf.Duration"),
				message("max_retries", 22, ".google.protobuf.UInt32Value"),
				message("allow", 23, ".google.protobuf.BoolValue"),
				message("weight", 24, ".google.protobuf.DoubleValue"),
				message("config", 25, ".google.protobuf.Struct"),
				message("anything", 26, ".google.protobuf.Value"),
				message("typed", 27, ".google.protobuf.Any"),
				inOneof(scalar("exact", 30, descriptorpb.FieldDescriptorProto_TYPE_STRING), 0),
				inOneof(scalar("prefix", 31, descriptorpb.FieldDescriptorProto_TYPE_STRING), 0),
				optional,
			},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("match")}, {Name: proto.String("_note")}},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name:    proto.String("ByPortEntry"),
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				Field: []*descriptorpb.FieldDescriptorProto{
					scalar("key", 1, descriptorpb.FieldDescriptorProto_TYPE_UINT32),
					message("value", 2, "."+pkg+".Node"),
				},
			}},
		}},
	}
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("building the test descriptor: %v", err)
	}
	return fd.Messages().ByName("Node")
}

// The whole expected schema, so that any change to a mapping shows here.
const wantNodeSchema = `oneOf:
- not:
    anyOf:
    - required:
      - exact
    - required:
      - prefix
- required:
  - exact
- required:
  - prefix
properties:
  allow:
    nullable: true
    type: boolean
  anything:
    x-kubernetes-preserve-unknown-fields: true
  body:
    format: byte
    type: string
  byPort:
    additionalProperties:
      type: object
      x-kubernetes-preserve-unknown-fields: true
    type: object
  children:
    items:
      type: object
      x-kubernetes-preserve-unknown-fields: true
    type: array
  config:
    type: object
    x-kubernetes-preserve-unknown-fields: true
  count32:
    format: int32
    type: integer
  count64:
    format: int64
    type: integer
  enabled:
    type: boolean
  exact:
    type: string
  hostName:
    type: string
  maxRetries:
    maximum: 4294967295
    minimum: 0
    nullable: true
    type: integer
  mode:
    enum:
    - UNSET
    - FAST
    - QUICK
    type: string
  note:
    type: string
  port:
    maximum: 4294967295
    minimum: 0
    type: integer
  prefix:
    type: string
  ratio:
    format: double
    type: number
  ringSize:
    minimum: 0
    type: integer
  tags:
    items:
      type: string
    type: array
  timeout:
    pattern: ^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$
    type: string
  typed:
    type: object
    x-kubernetes-preserve-unknown-fields: true
  weight:
    format: double
    nullable: true
    type: number
required:
- hostName
type: object
`

func TestMessageSchemaMapsEveryFieldShape(t *testing.T) {
	s, err := messageSchema(testMessage(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != wantNodeSchema {
		t.Errorf("schema differs from the expected one\n%s\ngot:\n%s", golden.Diff(wantNodeSchema, string(got)), got)
	}
}

// A message with two oneofs needs both rules, so they go under allOf.
func TestTwoOneofsAreBothEnforced(t *testing.T) {
	md := istioMessage(t, "istio.networking.v1alpha3.LoadBalancerSettings.ConsistentHashLB")
	s, err := messageSchema(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.OneOf) != 0 || len(s.AllOf) != 2 {
		t.Fatalf("want two rules under allOf, got oneOf %d, allOf %d", len(s.OneOf), len(s.AllOf))
	}
	var members []string
	for _, rule := range s.AllOf {
		var names []string
		for _, alt := range rule.OneOf[1:] {
			names = append(names, alt.Required...)
		}
		members = append(members, strings.Join(names, ","))
	}
	want := []string{"httpHeaderName,httpCookie,useSourceIp,httpQueryParameterName", "ringHash,maglev"}
	if fmt.Sprint(members) != fmt.Sprint(want) {
		t.Fatalf("oneof members %v, want %v", members, want)
	}
}

func istioMessage(t *testing.T, name protoreflect.FullName) protoreflect.MessageDescriptor {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d.(protoreflect.MessageDescriptor)
}

// The duration pattern must accept exactly what time.ParseDuration, Istio's
// parser for durations, accepts (values too large for it aside: none here).
func TestDurationPatternMatchesParseDuration(t *testing.T) {
	pattern := regexp.MustCompile(durationPattern)
	check := func(s string) {
		t.Helper()
		_, err := time.ParseDuration(s)
		if matched := pattern.MatchString(s); matched != (err == nil) {
			t.Errorf("%q: pattern matches %v, time.ParseDuration error %v", s, matched, err)
		}
	}
	for _, s := range []string{
		"1s", "0.5s", "100ms", "5m", "1h30m", "2.5h", "0", "-0", "+5s", "-1s", ".5s", "5.s", "1.5h2m",
		"1us", "1µs", "1μs", "1ns", "00s", "5m.5s",
		"", "5", "s", ".s", "-.s", "5 s", "5sec", "1d", "1e3s", "5ms5", "+", "-", "1h 30m", " 1s", "1s ",
	} {
		check(s)
	}
	// And short random strings over the grammar's alphabet, where the corner
	// cases hide.
	alphabet := []rune("0123456789.+-nuµμmsh d")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50000 {
		r := make([]rune, rng.IntN(7))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		check(string(r))
	}
}
