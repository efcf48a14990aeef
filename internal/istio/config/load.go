package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Reason classifies a Problem.
type Reason int

const (
	// ReasonParse: a document is not valid YAML/JSON, not an object, or has no apiVersion/kind.
	ReasonParse Reason = iota + 1
	// ReasonSchema: a field is unknown, has the wrong type or an unknown enum value, two
	// members of a one-of are set, or the apiVersion is not served.
	ReasonSchema
	// ReasonUnknownKind: the kind is not one this package decodes; the object is kept
	// unstructured and not checked. Not an error.
	ReasonUnknownKind
)

// Problem is something wrong with the input found while loading it.
type Problem struct {
	Source Source
	Reason Reason
	// Kind, Namespace and Name of the object, when the document got that far.
	Kind, Namespace, Name string
	// Field is the path of the offending field, e.g. "spec.http[0].route[0].destinaton"; empty
	// for problems with the whole document.
	Field   string
	Message string
}

// Options control loading.
type Options struct {
	// DefaultNamespace is given to namespaced objects that do not name one, as kubectl does
	// with its context's namespace. Empty means "default".
	DefaultNamespace string
}

func (o Options) defaultNamespace() string {
	if o.DefaultNamespace == "" {
		return "default"
	}
	return o.DefaultNamespace
}

// Result is everything read from the input.
type Result struct {
	// Objects in input order: files in the order given, directories walked in lexical order,
	// documents in file order.
	Objects  []Object
	Problems []Problem
}

// IsConfigFile reports whether a file found while walking a directory is read: *.yaml, *.yml
// and *.json. Files named explicitly are always read.
func IsConfigFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Load reads every path: a file, or a directory walked recursively for config files (hidden
// directories are skipped). The error is for I/O problems only (a path that does not exist, a
// file that cannot be read); problems with the content are in Result.Problems.
func Load(paths []string, opts Options) (*Result, error) {
	result := &Result{}
	for _, path := range paths {
		files, err := configFiles(path)
		if err != nil {
			return nil, err
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			result.append(LoadBytes(file, data, opts))
		}
	}
	return result, nil
}

func configFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if IsConfigFile(p) {
			files = append(files, p)
		}
		return nil
	})
	return files, err
}

// LoadBytes reads the documents of one file's content; file is used for Sources only.
func LoadBytes(file string, data []byte, opts Options) *Result {
	result := &Result{}
	docs, err := splitDocuments(data)
	if err != nil {
		result.Problems = append(result.Problems, Problem{
			Source: Source{File: file, Line: 1}, Reason: ReasonParse, Message: err.Error(),
		})
		return result
	}
	for _, doc := range docs {
		result.append(decodeDocument(file, doc, opts))
	}
	return result
}

func (r *Result) append(other *Result) {
	r.Objects = append(r.Objects, other.Objects...)
	r.Problems = append(r.Problems, other.Problems...)
}

// document is one YAML document of a file.
type document struct {
	data []byte
	// firstLine is the 1-based line in the file of data's first line.
	firstLine int
}

// splitDocuments splits a multi-document stream with apimachinery's YAML reader (the one
// kubectl uses, so documents split exactly as they would on apply) and works out where each
// document starts. The reader returns every line unchanged except a "---" separator that ends
// a non-empty document, which it drops; a separator met with nothing buffered (at the start of
// the file, or after another separator) stays in the next document.
func splitDocuments(data []byte) ([]document, error) {
	lines := bytes.Split(data, []byte("\n"))
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	next := 0 // index in lines of the first line not yet accounted for
	for {
		chunk, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting YAML documents: %w", err)
		}
		docs = append(docs, document{data: chunk, firstLine: next + 1})
		next += bytes.Count(chunk, []byte("\n"))
		if next < len(lines) && isSeparator(lines[next]) {
			next++
		}
	}
}

func isSeparator(line []byte) bool { return bytes.HasPrefix(line, []byte("---")) }

// contentLine returns the line of a document's first line that is neither blank, a comment nor
// a separator, which is where a reader expects "the object" to start.
func (d document) contentLine() int {
	for i, line := range bytes.Split(d.data, []byte("\n")) {
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) > 0 && trimmed[0] != '#' && !isSeparator(line) {
			return d.firstLine + i
		}
	}
	return d.firstLine
}
