package agenttest

import (
	"crypto/tls"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// ADSServer stands in for meshd's xDS over TLS. It records every stream's
// authorization metadata and requests, and answers each request that is not
// an ACK or NACK (no response nonce) with a response echoing its type URL
// and resource names, so a test can follow messages through a proxy.
type ADSServer struct {
	Addr string

	mu      sync.Mutex
	streams []*ADSStream
	opened  chan *ADSStream
}

// ADSStream is one stream the server saw.
type ADSStream struct {
	Delta bool
	// Authorization is the stream's "authorization" metadata.
	Authorization []string
	// Ended is closed when the stream has ended, whichever side ended it.
	Ended <-chan struct{}

	end      chan error
	mu       sync.Mutex
	node     *corev3.Node
	requests []string // "type|names", in order
}

// Node is the node of the stream's first request that had one.
func (s *ADSStream) Node() *corev3.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// Requests lists the requests received, as "<type url>|<comma-separated names>".
func (s *ADSStream) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// End ends the stream from the server's side with err (nil: status OK).
func (s *ADSStream) End(err error) {
	select {
	case s.end <- err:
	default:
	}
}

// NewADSServer serves ADS with tlsConfig on a loopback port until the test
// ends.
func NewADSServer(t testing.TB, tlsConfig *tls.Config) *ADSServer {
	t.Helper()
	a := &ADSServer{opened: make(chan *ADSStream, 100)}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, adsService{a})
	a.Addr = serve(t, srv)
	return a
}

// Opened delivers each stream as it opens.
func (a *ADSServer) Opened() <-chan *ADSStream { return a.opened }

// Streams returns every stream seen so far.
func (a *ADSServer) Streams() []*ADSStream {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*ADSStream(nil), a.streams...)
}

func (a *ADSServer) open(ss grpc.ServerStream, delta bool) (*ADSStream, func()) {
	md, _ := metadata.FromIncomingContext(ss.Context())
	ended := make(chan struct{})
	s := &ADSStream{Delta: delta, Authorization: md.Get("authorization"), Ended: ended, end: make(chan error, 1)}
	a.mu.Lock()
	a.streams = append(a.streams, s)
	a.mu.Unlock()
	select {
	case a.opened <- s:
	default: // nobody is watching Opened; Streams still has it
	}
	return s, func() { close(ended) }
}

func (s *ADSStream) record(node *corev3.Node, typeURL string, names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil && node != nil {
		s.node = node
	}
	s.requests = append(s.requests, typeURL+"|"+strings.Join(names, ","))
}

type adsService struct{ a *ADSServer }

// serveStream hands each request to handle until the client goes or End is
// called; recv runs in the background so that End is noticed at once.
func serveStream[Req any](ss grpc.ServerStream, s *ADSStream, recv func() (*Req, error), handle func(*Req) error) error {
	reqs := make(chan *Req)
	errs := make(chan error, 1)
	go func() {
		for {
			req, err := recv()
			if err != nil {
				errs <- err
				return
			}
			select {
			case reqs <- req:
			case <-ss.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case req := <-reqs:
			if err := handle(req); err != nil {
				return err
			}
		case <-errs:
			return nil
		case err := <-s.end:
			return err
		case <-ss.Context().Done():
			return nil
		}
	}
}

func (svc adsService) StreamAggregatedResources(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	s, done := svc.a.open(stream, false)
	defer done()
	n := 0
	return serveStream(stream, s, stream.Recv, func(req *discoveryv3.DiscoveryRequest) error {
		s.record(req.GetNode(), req.GetTypeUrl(), req.GetResourceNames())
		if req.GetResponseNonce() != "" {
			return nil
		}
		n++
		return stream.Send(&discoveryv3.DiscoveryResponse{
			TypeUrl:     req.GetTypeUrl(),
			VersionInfo: strings.Join(req.GetResourceNames(), ","),
			Nonce:       strconv.Itoa(n),
		})
	})
}

func (svc adsService) DeltaAggregatedResources(stream grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	s, done := svc.a.open(stream, true)
	defer done()
	n := 0
	return serveStream(stream, s, stream.Recv, func(req *discoveryv3.DeltaDiscoveryRequest) error {
		s.record(req.GetNode(), req.GetTypeUrl(), req.GetResourceNamesSubscribe())
		if req.GetResponseNonce() != "" {
			return nil
		}
		n++
		return stream.Send(&discoveryv3.DeltaDiscoveryResponse{
			TypeUrl:           req.GetTypeUrl(),
			SystemVersionInfo: strings.Join(req.GetResourceNamesSubscribe(), ","),
			Nonce:             strconv.Itoa(n),
		})
	})
}
