package validation

import "strings"

// hostCovers reports whether pattern (a host, "*.suffix" or "*") matches host, which may itself
// be a wildcard: "*.example.com" covers "api.example.com" and "*.eu.example.com".
func hostCovers(pattern, host string) bool {
	switch {
	case pattern == host || pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:])
	default:
		return false
	}
}

// hostsOverlap reports whether some host matches both a and b.
func hostsOverlap(a, b string) bool { return hostCovers(a, b) || hostCovers(b, a) }
