package server

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// DebugHandler serves, for the monitoring port (15014):
//
//   - GET /debug/syncz: every connected proxy with its type, namespace, pod,
//     IP, workload and, per xDS type, the version set in its snapshot, the
//     version last sent, the version last ACKed and the last NACK.
//   - GET /debug/config_dump?proxy=<id>: the resources last set for that
//     proxy, as JSON (protojson, each resource with its "@type"); 404 for an
//     unknown proxy.
//
// Mount it at /debug/ (or at /).
func (s *Server) DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/syncz", s.syncz)
	mux.HandleFunc("GET /debug/config_dump", s.configDump)
	return mux
}

// SyncStatus is one proxy in /debug/syncz.
type SyncStatus struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	IP        string `json:"ip,omitempty"`
	// Workload is namespace/name of the resolved pod, if any.
	Workload string `json:"workload,omitempty"`
	Streams  int    `json:"streams"`
	// Types is keyed by xDS type URL.
	Types map[string]TypeSyncStatus `json:"types"`
}

// TypeSyncStatus is one xDS type of one proxy in /debug/syncz.
type TypeSyncStatus struct {
	Set      string    `json:"set"`
	Sent     string    `json:"sent"`
	Acked    string    `json:"acked"`
	LastNack *nackInfo `json:"lastNack,omitempty"`
}

// SyncStatus returns what /debug/syncz shows, sorted by proxy id.
func (s *Server) SyncStatus() []SyncStatus {
	proxies := s.connected()
	s.mu.RLock()
	streams := make([]int, len(proxies))
	for i, p := range proxies {
		streams[i] = p.streams
	}
	s.mu.RUnlock()
	out := make([]SyncStatus, 0, len(proxies))
	for i, p := range proxies {
		st := SyncStatus{
			ID:        p.id,
			Type:      string(p.ident.Type),
			Namespace: p.ident.Namespace,
			Pod:       p.ident.Pod,
			IP:        p.ident.IP,
			Streams:   streams[i],
			Types:     map[string]TypeSyncStatus{},
		}
		if last := p.last.Load(); last != nil && last.proxy != nil {
			st.Namespace, st.Pod, st.IP = last.proxy.Namespace, last.proxy.Pod, last.proxy.IP
			if wl := last.proxy.Workload; wl != nil {
				st.Workload = wl.Namespace + "/" + wl.Name
			}
		}
		p.mu.Lock()
		for t, ts := range p.types {
			tss := TypeSyncStatus{Set: ts.Set, Sent: ts.Sent, Acked: ts.Acked}
			if ts.LastNack != nil {
				n := *ts.LastNack
				tss.LastNack = &n
			}
			st.Types[t] = tss
		}
		p.mu.Unlock()
		out = append(out, st)
	}
	return out
}

func (s *Server) syncz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.SyncStatus())
}

// ConfigDump is /debug/config_dump's answer.
type ConfigDump struct {
	Proxy string `json:"proxy"`
	Type  string `json:"type"`
	// SetAt is when the snapshot was set.
	SetAt time.Time `json:"setAt"`
	// Versions and Resources are keyed by xDS type URL.
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxy")
	if id == "" {
		http.Error(w, "the proxy parameter is required", http.StatusBadRequest)
		return
	}
	p := s.proxy(id)
	if p == nil {
		http.Error(w, "unknown proxy "+id, http.StatusNotFound)
		return
	}
	last := p.last.Load()
	if last == nil {
		http.Error(w, "no configuration set yet for proxy "+id, http.StatusNotFound)
		return
	}
	dump := ConfigDump{
		Proxy:     id,
		Type:      string(p.ident.Type),
		SetAt:     last.at,
		Versions:  last.versions,
		Resources: map[string][]json.RawMessage{},
	}
	for _, t := range slices.Sorted(maps.Keys(last.resources)) {
		list := make([]json.RawMessage, 0, len(last.resources[t]))
		for _, res := range last.resources[t] {
			a, err := anypb.New(res)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			b, err := protojson.Marshal(a)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			list = append(list, b)
		}
		dump.Resources[resourcev3.Type(t)] = list
	}
	writeJSON(w, dump)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
