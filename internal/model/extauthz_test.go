package model

import "testing"

func TestExtAuthzProviders(t *testing.T) {
	in := []ExtAuthzProvider{
		{Name: "b", Service: "ns/b", Port: 80, IncludeAdditionalHeadersInCheck: map[string]string{"x": "1"}},
		{Name: "a", Service: "ns/a", Port: 9000, GRPC: true},
	}
	p := NewExtAuthzProviders(in)
	if l := p.List(); len(l) != 2 || l[0].Name != "a" || l[1].Name != "b" {
		t.Fatalf("list %v, want sorted by name", l)
	}
	if in[0].Name != "b" {
		t.Error("the input was reordered")
	}
	if got, ok := p.Lookup("b"); !ok || got.Port != 80 {
		t.Errorf("lookup b: %v %v", got, ok)
	}
	if _, ok := p.Lookup("c"); ok {
		t.Error("lookup c found something")
	}
	if !p.Equal(NewExtAuthzProviders([]ExtAuthzProvider{in[1], in[0]})) {
		t.Error("the same providers in another order are not Equal")
	}
	changed := []ExtAuthzProvider{in[0], in[1]}
	changed[0].IncludeAdditionalHeadersInCheck = map[string]string{"x": "2"}
	if p.Equal(NewExtAuthzProviders(changed)) {
		t.Error("providers with another header value are Equal")
	}
	if NewExtAuthzProviders(nil) != nil || p.Equal(nil) {
		t.Error("no providers must be nil, and unequal to some")
	}
}
