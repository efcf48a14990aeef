package validation

import (
	"cmp"
	"slices"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// Finding is one problem with the input, found by loading it, validating one object, or
// analysing objects together.
type Finding struct {
	Code Code
	// Kind, Namespace and Name of the object the finding is about; Namespace is empty for
	// cluster-scoped objects, all three for a file that could not be parsed.
	Kind, Namespace, Name string
	// Source is the file and line of the offending field (or of the object when the field is
	// not written in the file).
	Source config.Source
	// Field is the path of the offending field, such as "spec.http[0].route[0].destination.subset".
	Field   string
	Message string
}

// Severity of the finding, from its code.
func (f Finding) Severity() Severity { return f.Code.Severity }

// Object renders "Kind namespace/name", "Kind name" or "" for findings not about one object.
func (f Finding) Object() string {
	switch {
	case f.Kind == "":
		return ""
	case f.Namespace == "":
		return f.Kind + " " + f.Name
	default:
		return f.Kind + " " + f.Namespace + "/" + f.Name
	}
}

// SortFindings orders findings by file, line, code, object, field and message, so output is the
// same on every run whatever order the checks ran in.
func SortFindings(findings []Finding) {
	slices.SortStableFunc(findings, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(a.Source.File, b.Source.File),
			cmp.Compare(a.Source.Line, b.Source.Line),
			cmp.Compare(a.Code.ID, b.Code.ID),
			cmp.Compare(a.Object(), b.Object()),
			cmp.Compare(a.Field, b.Field),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// HasErrors reports whether any finding has severity Error.
func HasErrors(findings []Finding) bool {
	return slices.ContainsFunc(findings, func(f Finding) bool { return f.Severity() == Error })
}

// Check is CheckWith without knowing the mesh's root namespace.
func Check(loaded *config.Result) []Finding { return CheckWith(loaded, Options{}) }

// CheckWith reports everything wrong with loaded input: problems found while loading, each
// object's own validation, objects defined twice, and the analysis of all objects together.
// Findings are sorted.
func CheckWith(loaded *config.Result, opts Options) []Finding {
	var findings []Finding
	for _, problem := range loaded.Problems {
		findings = append(findings, Finding{
			Code:      problemCode(problem.Reason),
			Kind:      problem.Kind,
			Namespace: problem.Namespace,
			Name:      problem.Name,
			Source:    problem.Source,
			Field:     problem.Field,
			Message:   problem.Message,
		})
	}
	seen := map[string]*config.Object{}
	for i := range loaded.Objects {
		object := &loaded.Objects[i]
		for _, issue := range validateObject(object.Object) {
			findings = append(findings, objectFinding(object, issue.code, issue.err.Field, issue.message()))
		}
		key := object.Kind + " " + object.Ref()
		if first, ok := seen[key]; ok {
			findings = append(findings, objectFinding(object, CodeDuplicateObject, "",
				"also defined at "+first.Source.String()+"; applying both keeps only this one"))
		} else {
			seen[key] = object
		}
	}
	findings = append(findings, AnalyzeWith(loaded.Objects, opts)...)
	SortFindings(findings)
	return findings
}

func problemCode(reason config.Reason) Code {
	switch reason {
	case config.ReasonSchema:
		return CodeSchemaError
	case config.ReasonUnknownKind:
		return CodeUnknownKind
	default:
		return CodeParseError
	}
}

// objectFinding builds a finding about object, pointing at the line of path in its file.
func objectFinding(object *config.Object, code Code, path, message string) Finding {
	return Finding{
		Code:      code,
		Kind:      object.Kind,
		Namespace: object.Namespace(),
		Name:      object.Name(),
		Source:    object.SourceOf(path),
		Field:     path,
		Message:   message,
	}
}
