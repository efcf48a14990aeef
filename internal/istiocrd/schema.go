package istiocrd

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"
)

// messageSchema returns the structural OpenAPI schema of a message as Istio's
// YAML spells it, which is the proto3 JSON mapping: camelCase field names, enum
// values by name, well-known types in their JSON forms.
//
// It is as strict as the descriptors can say: types, enum names, required
// fields (google.api.field_behavior = REQUIRED), at most one field per oneof,
// and the duration syntax Istio parses. Istio's own CRDs add rules written in
// proto comments (durations of at least 1ms, port ranges, ...), which
// descriptors do not carry; Istio still checks those when it reads the config.
func messageSchema(md protoreflect.MessageDescriptor) (apiextensionsv1.JSONSchemaProps, error) {
	b := &schemaBuilder{onPath: map[protoreflect.FullName]bool{}}
	return b.message(md)
}

// protoNameAccepted are fields whose proto name Istio's CRDs accept besides the
// JSON name (proto JSON parsers take both). Istio says so in proto comments
// (+kubebuilder:altName), which descriptors do not carry; published YAML uses
// these spellings, and a schema without them would silently prune them.
var protoNameAccepted = map[protoreflect.FullName]bool{
	"istio.networking.v1alpha3.HTTPRoute.mirror_percent": true,
	"istio.security.v1beta1.JWTRule.jwks_uri":            true,
}

type schemaBuilder struct {
	// onPath holds the messages between the root and the one being built, to
	// stop at a message that contains itself.
	onPath map[protoreflect.FullName]bool
}

func (b *schemaBuilder) message(md protoreflect.MessageDescriptor) (apiextensionsv1.JSONSchemaProps, error) {
	if s, ok := wellKnownSchema(md.FullName()); ok {
		return s, nil
	}
	if b.onPath[md.FullName()] {
		// A structural schema cannot refer to itself; below this point the API
		// server keeps whatever is there and Istio's own parsing validates it.
		return preserveUnknownObject(), nil
	}
	b.onPath[md.FullName()] = true
	defer delete(b.onPath, md.FullName())

	s := apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{}}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		fs, err := b.field(fd)
		if err != nil {
			return apiextensionsv1.JSONSchemaProps{}, fmt.Errorf("%s: %w", fd.FullName(), err)
		}
		s.Properties[fd.JSONName()] = fs
		if protoNameAccepted[fd.FullName()] {
			s.Properties[string(fd.Name())] = fs
		}
		if isRequired(fd) {
			s.Required = append(s.Required, fd.JSONName())
		}
	}
	switch oneofs := oneofRules(md); len(oneofs) {
	case 0:
	case 1:
		s.OneOf = oneofs[0].OneOf
	default:
		s.AllOf = oneofs
	}
	return s, nil
}

func (b *schemaBuilder) field(fd protoreflect.FieldDescriptor) (apiextensionsv1.JSONSchemaProps, error) {
	switch {
	case fd.IsMap():
		// JSON object keys are strings whatever the proto key type is.
		value, err := b.singular(fd.MapValue())
		if err != nil {
			return apiextensionsv1.JSONSchemaProps{}, err
		}
		return apiextensionsv1.JSONSchemaProps{
			Type:                 "object",
			AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &value},
		}, nil
	case fd.IsList():
		item, err := b.singular(fd)
		if err != nil {
			return apiextensionsv1.JSONSchemaProps{}, err
		}
		return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &item}}, nil
	}
	return b.singular(fd)
}

// singular is the schema of one value of the field (an element for lists).
func (b *schemaBuilder) singular(fd protoreflect.FieldDescriptor) (apiextensionsv1.JSONSchemaProps, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return apiextensionsv1.JSONSchemaProps{Type: "boolean"}, nil
	case protoreflect.StringKind:
		return apiextensionsv1.JSONSchemaProps{Type: "string"}, nil
	case protoreflect.BytesKind:
		return apiextensionsv1.JSONSchemaProps{Type: "string", Format: "byte"}, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int32"}, nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return uint32Schema(), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// Proto JSON also accepts int64 as a quoted string, but Istio's CRDs
		// declare integers, so Istio YAML never quotes them.
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int64"}, nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Minimum: ptr.To(0.0)}, nil
	case protoreflect.FloatKind:
		return apiextensionsv1.JSONSchemaProps{Type: "number", Format: "float"}, nil
	case protoreflect.DoubleKind:
		return apiextensionsv1.JSONSchemaProps{Type: "number", Format: "double"}, nil
	case protoreflect.EnumKind:
		return enumSchema(fd.Enum())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return b.message(fd.Message())
	}
	return apiextensionsv1.JSONSchemaProps{}, fmt.Errorf("unsupported field kind %s", fd.Kind())
}

// enumSchema lists every value name, aliases included: Istio YAML names enum
// values (proto JSON would also take numbers, Istio's CRDs do not).
func enumSchema(ed protoreflect.EnumDescriptor) (apiextensionsv1.JSONSchemaProps, error) {
	s := apiextensionsv1.JSONSchemaProps{Type: "string"}
	values := ed.Values()
	for i := range values.Len() {
		raw, err := json.Marshal(string(values.Get(i).Name()))
		if err != nil {
			return apiextensionsv1.JSONSchemaProps{}, err
		}
		s.Enum = append(s.Enum, apiextensionsv1.JSON{Raw: raw})
	}
	return s, nil
}

func uint32Schema() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "integer", Minimum: ptr.To(0.0), Maximum: ptr.To(float64(math.MaxUint32))}
}

func preserveUnknownObject() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
}

// durationPattern is the grammar of Go's time.ParseDuration, which is what
// Istio's generated JSON unmarshalers (golang/protobuf jsonpb) parse a
// google.protobuf.Duration with: "1s", "0.5s", "100ms", "1h30m", "0". Only
// values too large for an int64 of nanoseconds pass here and fail there.
const durationPattern = `^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// wellKnownSchema maps the google.protobuf types to their proto JSON forms.
func wellKnownSchema(name protoreflect.FullName) (apiextensionsv1.JSONSchemaProps, bool) {
	nullable := func(s apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		// A wrapper is "unset" when null, which proto JSON accepts.
		s.Nullable = true
		return s
	}
	switch name {
	case "google.protobuf.Duration":
		return apiextensionsv1.JSONSchemaProps{Type: "string", Pattern: durationPattern}, true
	case "google.protobuf.Timestamp":
		return apiextensionsv1.JSONSchemaProps{Type: "string"}, true
	case "google.protobuf.FieldMask":
		return apiextensionsv1.JSONSchemaProps{Type: "string"}, true
	case "google.protobuf.Empty":
		return apiextensionsv1.JSONSchemaProps{Type: "object"}, true
	case "google.protobuf.Struct", "google.protobuf.Any":
		return preserveUnknownObject(), true
	case "google.protobuf.Value":
		// Any JSON value: no type, everything kept.
		return apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: ptr.To(true)}, true
	case "google.protobuf.ListValue":
		item := apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: ptr.To(true)}
		return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &item}}, true
	case "google.protobuf.BoolValue":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "boolean"}), true
	case "google.protobuf.StringValue":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "string"}), true
	case "google.protobuf.BytesValue":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "string", Format: "byte"}), true
	case "google.protobuf.Int32Value":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int32"}), true
	case "google.protobuf.UInt32Value":
		return nullable(uint32Schema()), true
	case "google.protobuf.Int64Value":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int64"}), true
	case "google.protobuf.UInt64Value":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "integer", Minimum: ptr.To(0.0)}), true
	case "google.protobuf.FloatValue":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "number", Format: "float"}), true
	case "google.protobuf.DoubleValue":
		return nullable(apiextensionsv1.JSONSchemaProps{Type: "number", Format: "double"}), true
	}
	return apiextensionsv1.JSONSchemaProps{}, false
}

// isRequired reports google.api.field_behavior = REQUIRED, which Istio's protos
// use for exactly the fields its CRDs require.
func isRequired(fd protoreflect.FieldDescriptor) bool {
	opts := fd.Options()
	if opts == nil {
		return false
	}
	behaviors, _ := proto.GetExtension(opts, annotations.E_FieldBehavior).([]annotations.FieldBehavior)
	return slices.Contains(behaviors, annotations.FieldBehavior_REQUIRED)
}

// oneofRules returns, for each oneof of two or more fields, a schema that admits
// an object with at most one of them: proto JSON refuses a second member, so
// the API server should too. Plain OpenAPI rather than CEL, as in Istio's own
// CRDs: it costs nothing against the API server's CEL budget, which rules inside
// unbounded lists would strain.
func oneofRules(md protoreflect.MessageDescriptor) []apiextensionsv1.JSONSchemaProps {
	var rules []apiextensionsv1.JSONSchemaProps
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		od := oneofs.Get(i)
		if od.IsSynthetic() || od.Fields().Len() < 2 {
			continue // proto3 `optional`, or nothing to choose between
		}
		var members []apiextensionsv1.JSONSchemaProps
		for j := range od.Fields().Len() {
			members = append(members, apiextensionsv1.JSONSchemaProps{Required: []string{od.Fields().Get(j).JSONName()}})
		}
		// Either none of the members is set, or exactly one is.
		rule := apiextensionsv1.JSONSchemaProps{OneOf: append(
			[]apiextensionsv1.JSONSchemaProps{{Not: &apiextensionsv1.JSONSchemaProps{AnyOf: members}}},
			members...)}
		rules = append(rules, rule)
	}
	return rules
}
