package config

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// checkMessage checks a decoded JSON value (numbers as json.Number) against a protobuf message
// schema the way the Kubernetes API server checks an Istio object against the CRD's structural
// schema: every field known (by its JSON or proto name, both of which Istio accepts), every
// value of the field's type, enum values by name, at most one member of each one-of. Istio's own
// decoder ignores unknown fields and keeps only the last member of a one-of, so these mistakes
// would otherwise be silent.
//
// What it reports it also removes from value, so that the rest still decodes and the object can
// take part in analysis; usable is false when value itself has to go.
func checkMessage(md protoreflect.MessageDescriptor, value any, path *field.Path) (errs field.ErrorList, usable bool) {
	if value == nil {
		return nil, true
	}
	if errs, wellKnown := checkWellKnown(md, value, path); wellKnown {
		return errs, len(errs) == 0
	}
	object, ok := value.(map[string]any)
	if !ok {
		return field.ErrorList{field.Invalid(path, value, "must be an object")}, false
	}
	oneofMembers := map[string][]string{}
	for _, key := range sortedKeys(object) {
		fd := fieldByName(md, key)
		if fd == nil {
			errs = append(errs, field.Invalid(path.Child(key), "", unknownFieldMessage(key, fieldNames(md))))
			delete(object, key)
			continue
		}
		if oneof := fd.ContainingOneof(); oneof != nil && !oneof.IsSynthetic() && object[key] != nil {
			oneofMembers[string(oneof.FullName())] = append(oneofMembers[string(oneof.FullName())], key)
		}
		fieldErrs, fieldUsable := checkField(fd, object[key], path.Child(key))
		errs = append(errs, fieldErrs...)
		if !fieldUsable {
			delete(object, key)
		}
	}
	for _, oneof := range sortedKeys(oneofMembers) {
		members := oneofMembers[oneof]
		for _, extra := range members[1:] {
			errs = append(errs, field.Invalid(path.Child(extra), "",
				fmt.Sprintf("only one of %s may be set, and %s is set too", strings.Join(members, ", "), members[0])))
			delete(object, extra)
		}
	}
	return errs, true
}

func fieldByName(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	return md.Fields().ByName(protoreflect.Name(key))
}

func fieldNames(md protoreflect.MessageDescriptor) []string {
	names := make([]string, 0, md.Fields().Len())
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	return names
}

// checkField checks one field's value; usable is false when the value has to be removed (a
// list or map is removed whole when one of its entries is unusable).
func checkField(fd protoreflect.FieldDescriptor, value any, path *field.Path) (errs field.ErrorList, usable bool) {
	if value == nil {
		return nil, true
	}
	switch {
	case fd.IsList():
		items, ok := value.([]any)
		if !ok {
			return field.ErrorList{field.Invalid(path, value, "must be a list")}, false
		}
		usable = true
		for i, item := range items {
			itemErrs, itemUsable := checkSingular(fd, item, path.Index(i))
			errs = append(errs, itemErrs...)
			usable = usable && itemUsable
		}
		return errs, usable
	case fd.IsMap():
		entries, ok := value.(map[string]any)
		if !ok {
			return field.ErrorList{field.Invalid(path, value, "must be a map")}, false
		}
		usable = true
		for _, key := range sortedKeys(entries) {
			if problem := checkMapKey(fd.MapKey().Kind(), key); problem != "" {
				errs = append(errs, field.Invalid(path.Key(key), key, problem))
				usable = false
				continue
			}
			entryErrs, entryUsable := checkSingular(fd.MapValue(), entries[key], path.Key(key))
			errs = append(errs, entryErrs...)
			usable = usable && entryUsable
		}
		return errs, usable
	default:
		return checkSingular(fd, value, path)
	}
}

func checkSingular(fd protoreflect.FieldDescriptor, value any, path *field.Path) (errs field.ErrorList, usable bool) {
	if value == nil {
		return nil, true
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(fd.Message(), value, path)
	case protoreflect.EnumKind:
		name, ok := value.(string)
		if !ok {
			return field.ErrorList{field.Invalid(path, value, "must be one of the names "+strings.Join(enumNames(fd.Enum()), ", "))}, false
		}
		if fd.Enum().Values().ByName(protoreflect.Name(name)) == nil {
			return field.ErrorList{field.Invalid(path, name,
				fmt.Sprintf("unknown value %q, must be one of %s", name, strings.Join(enumNames(fd.Enum()), ", ")))}, false
		}
		return nil, true
	default:
		if err := checkScalar(fd.Kind(), value); err != "" {
			return field.ErrorList{field.Invalid(path, value, err)}, false
		}
		return nil, true
	}
}

// checkMapKey returns what is wrong with a map key (always a string in JSON) for a map whose
// keys are of kind, or "": numeric keys, such as the ports of portLevelMtls, must be numbers.
func checkMapKey(kind protoreflect.Kind, key string) string {
	switch kind {
	case protoreflect.StringKind:
		return ""
	case protoreflect.BoolKind:
		if key != "true" && key != "false" {
			return fmt.Sprintf("key %q must be true or false", key)
		}
		return ""
	}
	if problem := checkScalar(kind, json.Number(key)); problem != "" {
		return fmt.Sprintf("key %q %s", key, problem)
	}
	return ""
}

// checkScalar returns what is wrong with value for a scalar field of kind, or "".
func checkScalar(kind protoreflect.Kind, value any) string {
	switch kind {
	case protoreflect.BoolKind:
		if _, ok := value.(bool); !ok {
			return "must be true or false"
		}
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := value.(string); !ok {
			return "must be a string (quote it)"
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := value.(json.Number); !ok {
			return "must be a number"
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return checkInteger(value, math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return checkInteger(value, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return checkInteger(value, 0, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return checkInteger(value, 0, math.MaxInt64)
	}
	return ""
}

func checkInteger(value any, minimum, maximum int64) string {
	number, ok := value.(json.Number)
	if !ok {
		return "must be an integer"
	}
	n, err := strconv.ParseInt(number.String(), 10, 64)
	if err != nil {
		return "must be an integer"
	}
	if n < minimum || n > maximum {
		return fmt.Sprintf("must be between %d and %d", minimum, maximum)
	}
	return ""
}

func enumNames(ed protoreflect.EnumDescriptor) []string {
	names := make([]string, 0, ed.Values().Len())
	for i := 0; i < ed.Values().Len(); i++ {
		names = append(names, string(ed.Values().Get(i).Name()))
	}
	return names
}

// checkWellKnown checks values of the google.protobuf types that have their own JSON form;
// wellKnown is false for every other message.
func checkWellKnown(md protoreflect.MessageDescriptor, value any, path *field.Path) (errs field.ErrorList, wellKnown bool) {
	if md.FullName().Parent() != "google.protobuf" {
		return nil, false
	}
	switch md.Name() {
	case "Duration":
		text, ok := value.(string)
		if !ok {
			return field.ErrorList{field.Invalid(path, value, `must be a duration string such as "10s", "1.5s" or "500ms"`)}, true
		}
		// Istio's decoder reads durations with time.ParseDuration, so "1m30s" works as well as "90s".
		if _, err := time.ParseDuration(text); err != nil {
			return field.ErrorList{field.Invalid(path, text,
				fmt.Sprintf(`%q is not a duration, write one such as "10s", "1.5s" or "500ms"`, text))}, true
		}
		return nil, true
	case "Timestamp":
		text, ok := value.(string)
		if _, err := time.Parse(time.RFC3339Nano, text); !ok || err != nil {
			return field.ErrorList{field.Invalid(path, value, "must be an RFC 3339 timestamp")}, true
		}
		return nil, true
	case "BoolValue", "StringValue", "BytesValue", "Int32Value", "UInt32Value", "Int64Value",
		"UInt64Value", "FloatValue", "DoubleValue":
		// Wrappers are written as their bare value.
		if err := checkScalar(md.Fields().ByName("value").Kind(), value); err != "" {
			return field.ErrorList{field.Invalid(path, value, err)}, true
		}
		return nil, true
	default:
		// Struct, Value, ListValue, Any, Empty: free-form.
		return nil, true
	}
}

// unknownFieldMessage says a field is unknown and, when one of the known names is close (a
// different case, underscores, or a typo of a letter or two), which one was probably meant.
func unknownFieldMessage(key string, known []string) string {
	normalized := normalizeFieldName(key)
	best, bestDistance := "", 3
	for _, name := range known {
		if normalizeFieldName(name) == normalized {
			return fmt.Sprintf("unknown field %q, did you mean %q?", key, name)
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(name)); d < bestDistance {
			best, bestDistance = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field %q, did you mean %q?", key, best)
	}
	return fmt.Sprintf("unknown field %q", key)
}

func normalizeFieldName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", ""))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	previous := make([]int, len(b)+1)
	current := make([]int, len(b)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(a); i++ {
		current[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			current[j] = slices.Min([]int{previous[j] + 1, current[j-1] + 1, previous[j-1] + cost})
		}
		previous, current = current, previous
	}
	return previous[len(b)]
}
