package ca

import "testing"

func TestIdentity(t *testing.T) {
	id, err := NewIdentity("cluster.local", "shop", "cart.v2")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.String(), "spiffe://cluster.local/ns/shop/sa/cart.v2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := id.URL().String(); got != id.String() {
		t.Errorf("URL() = %q, want %q", got, id.String())
	}
	parsed, err := ParseIdentity(id.String())
	if err != nil || parsed != id {
		t.Errorf("ParseIdentity(%q) = %+v, %v", id, parsed, err)
	}

	for _, bad := range []string{
		"",
		"https://cluster.local/ns/shop/sa/cart",
		"spiffe://cluster.local/ns/shop/sa/cart/extra",
		"spiffe://cluster.local/ns/shop/serviceaccount/cart",
		"spiffe://cluster.local/ns/shop/sa/",
		"spiffe://cluster.local:8443/ns/shop/sa/cart",
		"spiffe://user@cluster.local/ns/shop/sa/cart",
		"spiffe://cluster.local/ns/shop/sa/cart?x=1",
		"spiffe://cluster.local/ns/shop/sa/cart#f",
		"spiffe://Cluster.Local/ns/shop/sa/cart",
		"spiffe://cluster.local/ns/sh%6fp/sa/cart",
		"spiffe://cluster.local/ns/Shop/sa/cart",
		"spiffe:///ns/shop/sa/cart",
	} {
		if got, err := ParseIdentity(bad); err == nil {
			t.Errorf("ParseIdentity(%q) = %+v, want an error", bad, got)
		}
	}
	for _, tc := range [][3]string{
		{"", "ns", "sa"},
		{"UPPER", "ns", "sa"},
		{"td", "ns.dotted", "sa"},
		{"td", "ns", ""},
		{"td", "ns", "Bad_SA"},
	} {
		if _, err := NewIdentity(tc[0], tc[1], tc[2]); err == nil {
			t.Errorf("NewIdentity(%q) succeeded", tc)
		}
	}
}
