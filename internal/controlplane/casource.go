package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/meshd"
)

// caSettings are what the CA is built from. They are read from the first mesh
// config only: the certificate service's trust domain and signer, and the
// Secret watched, are fixed for the life of the process.
type caSettings struct {
	trustDomain string
	caType      string
	secretName  string // SelfSigned, Provided
	issuer      ca.IssuerRef
}

func (s caSettings) String() string {
	if s.caType == meshd.CACertManager {
		return fmt.Sprintf("{trustDomain %s, type %s, issuer %s %s/%s}", s.trustDomain, s.caType, s.issuer.Kind, s.issuer.Group, s.issuer.Name)
	}
	return fmt.Sprintf("{trustDomain %s, type %s, secret %s}", s.trustDomain, s.caType, s.secretName)
}

func caSettingsOf(cfg *meshd.MeshConfig) caSettings {
	s := caSettings{trustDomain: cfg.TrustDomain, caType: cfg.CA.Type}
	switch cfg.CA.Type {
	case meshd.CAProvided:
		if cfg.CA.Provided != nil {
			s.secretName = cfg.CA.Provided.SecretName
		}
	case meshd.CACertManager:
		if cm := cfg.CA.CertManager; cm != nil {
			s.issuer = ca.IssuerRef{Name: cm.IssuerRef.Name, Kind: cm.IssuerRef.Kind, Group: cm.IssuerRef.Group}
		}
	default: // SelfSigned, the default
		s.secretName = v1alpha1.SelfSignedCASecretName
	}
	return s
}

// secretSource keeps a Holder on the content of one CA Secret: every valid
// change replaces the CA (an intermediate rotation), an invalid one is logged
// and the CA loaded before keeps signing.
type secretSource struct {
	client   kubernetes.Interface
	key      types.NamespacedName
	holder   *ca.Holder
	log      logr.Logger
	onChange func() // after the holder took another CA

	mu sync.Mutex
	// problem says why the holder has no CA; empty once it has one.
	problem string
}

func newSecretSource(client kubernetes.Interface, key types.NamespacedName, holder *ca.Holder, log logr.Logger, onChange func()) *secretSource {
	return &secretSource{
		client:   client,
		key:      key,
		holder:   holder,
		log:      log.WithValues("secret", key.String()),
		onChange: onChange,
		problem:  fmt.Sprintf("the CA Secret %s has not been read yet", key),
	}
}

// ready reports whether the holder has a CA, and why not otherwise.
func (s *secretSource) ready() (bool, string) {
	if s.holder.Authority() != nil {
		return true, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return false, s.problem
}

func (s *secretSource) setProblem(p string) {
	s.mu.Lock()
	s.problem = p
	s.mu.Unlock()
}

// run watches the Secret, and only it (a field selector on its name), until
// ctx ends.
func (s *secretSource) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithNamespace(s.key.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.key.Name).String()
		}))
	informer := factory.Core().V1().Secrets().Informer()
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.load(obj) },
		UpdateFunc: func(_, obj any) { s.load(obj) },
		DeleteFunc: func(any) { s.deleted() },
	})
	if err != nil { // only when the informer has stopped, which it has not
		s.log.Error(err, "Watching the CA Secret")
		return
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return
	}
	if _, exists, _ := informer.GetStore().GetByKey(s.key.String()); !exists {
		s.missing()
	}
	<-ctx.Done()
}

func (s *secretSource) load(obj any) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	gen := s.holder.Generation()
	// The bundle holds the key: neither it nor the Secret is ever logged,
	// only the BundleError, which names problems and certificates.
	if err := s.holder.Update(ca.BundleFromSecretData(secret.Data)); err != nil {
		reason := "Invalid"
		var be *ca.BundleError
		if errors.As(err, &be) {
			reason = string(be.Reason)
		}
		if s.holder.Authority() != nil {
			s.log.Error(err, "CA Secret refused; the CA loaded before keeps signing", "reason", reason)
			return
		}
		s.setProblem(fmt.Sprintf("the CA Secret %s is refused (%s): %s", s.key, reason, err.Error()))
		s.log.Error(err, "CA Secret refused; no certificates are issued until it is valid", "reason", reason)
		return
	}
	if s.holder.Generation() != gen {
		s.log.Info("Loaded the mesh CA", "ca", s.holder.Authority().String())
		s.onChange()
	}
}

func (s *secretSource) missing() {
	if s.holder.Authority() != nil {
		return
	}
	s.setProblem(fmt.Sprintf("the CA Secret %s does not exist", s.key))
	s.log.Info("Waiting for the CA Secret; no certificates are issued until it exists")
}

func (s *secretSource) deleted() {
	if s.holder.Authority() != nil {
		s.log.Info("CA Secret deleted; the CA loaded before keeps signing until meshd restarts")
		return
	}
	s.missing()
}
