package validation

import (
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (v *validator) destinationRule(spec *networkingv1alpha3.DestinationRule) {
	specPath := field.NewPath("spec")
	if spec.Host == "" {
		v.required(specPath.Child("host"), "a DestinationRule needs the host it applies to")
	} else {
		v.host(specPath.Child("host"), spec.Host)
	}
	v.trafficPolicy(specPath.Child("trafficPolicy"), spec.TrafficPolicy)

	firstByName := map[string]int{}
	for i, subset := range spec.Subsets {
		path := specPath.Child("subsets").Index(i)
		if subset == nil {
			v.required(path, "a subset must not be empty")
			continue
		}
		switch {
		case subset.Name == "":
			v.required(path.Child("name"), "every subset needs a name; routes refer to subsets by name")
		case !isDNSLabel(subset.Name):
			v.invalid(CodeInvalidField, path.Child("name"), subset.Name, "subset name %q is not a DNS label (letters, digits and '-')", subset.Name)
		}
		if subset.Name != "" {
			if first, ok := firstByName[subset.Name]; ok {
				v.invalid(CodeDuplicateEntry, path.Child("name"), subset.Name, "subset %q is already defined by subsets[%d]", subset.Name, first)
			} else {
				firstByName[subset.Name] = i
			}
		}
		v.labels(path.Child("labels"), subset.Labels)
		v.trafficPolicy(path.Child("trafficPolicy"), subset.TrafficPolicy)
	}
	v.exportTo(specPath.Child("exportTo"), spec.ExportTo, false)
	if selector := spec.WorkloadSelector; selector != nil {
		v.labels(specPath.Child("workloadSelector", "matchLabels"), selector.MatchLabels)
	}
}

func (v *validator) trafficPolicy(path *field.Path, policy *networkingv1alpha3.TrafficPolicy) {
	if policy == nil {
		return
	}
	if policy.LoadBalancer == nil && policy.ConnectionPool == nil && policy.OutlierDetection == nil && policy.Tls == nil &&
		len(policy.PortLevelSettings) == 0 && policy.Tunnel == nil && policy.ProxyProtocol == nil && policy.RetryBudget == nil {
		v.required(path, "an empty trafficPolicy is rejected by Istio; set loadBalancer, connectionPool, outlierDetection, tls or portLevelSettings, or remove it")
		return
	}
	if policy.Tunnel != nil && policy.ProxyProtocol != nil {
		v.forbidden(path.Child("proxyProtocol"), "tunnel and proxyProtocol cannot be used together")
	}
	v.loadBalancer(path.Child("loadBalancer"), policy.LoadBalancer)
	v.connectionPool(path.Child("connectionPool"), policy.ConnectionPool)
	v.outlierDetection(path.Child("outlierDetection"), policy.OutlierDetection)
	v.clientTLS(path.Child("tls"), policy.Tls)
	if tunnel := policy.Tunnel; tunnel != nil {
		tunnelPath := path.Child("tunnel")
		if tunnel.Protocol != "" && tunnel.Protocol != "CONNECT" && tunnel.Protocol != "POST" {
			v.invalid(CodeInvalidField, tunnelPath.Child("protocol"), tunnel.Protocol, `tunnel protocol must be "CONNECT" or "POST"`)
		}
		if !isIPAddress(tunnel.TargetHost) && hostNameProblem(tunnel.TargetHost) != "" {
			v.invalid(CodeInvalidHost, tunnelPath.Child("targetHost"), tunnel.TargetHost, "tunnel targetHost %q is not a host name or IP address", tunnel.TargetHost)
		}
		v.port(tunnelPath.Child("targetPort"), tunnel.TargetPort)
	}

	for i, settings := range policy.PortLevelSettings {
		settingsPath := path.Child("portLevelSettings").Index(i)
		if settings == nil {
			continue
		}
		if settings.Port == nil {
			v.required(settingsPath.Child("port"), "port-level settings need the port they apply to")
		} else {
			v.port(settingsPath.Child("port", "number"), settings.Port.Number)
		}
		if settings.LoadBalancer == nil && settings.ConnectionPool == nil && settings.OutlierDetection == nil && settings.Tls == nil {
			v.required(settingsPath, "port-level settings need at least one of loadBalancer, connectionPool, outlierDetection or tls")
		}
		v.loadBalancer(settingsPath.Child("loadBalancer"), settings.LoadBalancer)
		v.connectionPool(settingsPath.Child("connectionPool"), settings.ConnectionPool)
		v.outlierDetection(settingsPath.Child("outlierDetection"), settings.OutlierDetection)
		v.clientTLS(settingsPath.Child("tls"), settings.Tls)
	}
}

// maglevTableSizeLimit: Envoy requires a prime table size below this.
const maglevTableSizeLimit = 5000011

func (v *validator) loadBalancer(path *field.Path, lb *networkingv1alpha3.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	// simple together with consistentHash, and two consistentHash keys, are one-of violations
	// that loading already reports (the decoded object can only hold one of each).
	if hash := lb.GetConsistentHash(); hash != nil {
		hashPath := path.Child("consistentHash")
		if cookie := hash.GetHttpCookie(); cookie != nil && cookie.Name == "" {
			v.required(hashPath.Child("httpCookie", "name"), "the cookie to hash on needs a name")
		}
		if hash.GetMinimumRingSize() != 0 && hash.GetHashAlgorithm() != nil {
			v.forbidden(hashPath.Child("minimumRingSize"), "minimumRingSize cannot be used together with ringHash or maglev; set ringHash.minimumRingSize instead")
		}
		if maglev := hash.GetMaglev(); maglev != nil {
			switch size := maglev.TableSize; {
			case size == 0:
				v.required(hashPath.Child("maglev", "tableSize"), "maglev needs a tableSize")
			case size >= maglevTableSizeLimit || !isPrime(size):
				v.invalid(CodeInvalidField, hashPath.Child("maglev", "tableSize"), size, "maglev tableSize %d must be a prime number below %d", size, maglevTableSizeLimit)
			}
		}
	}
	if lb.LocalityLbSetting != nil && lb.ZoneAwareLbSetting != nil {
		v.forbidden(path.Child("zoneAwareLbSetting"), "localityLbSetting and zoneAwareLbSetting cannot be used together")
	}
	v.duration(path.Child("warmupDurationSecs"), lb.WarmupDurationSecs)
	if warmup := lb.Warmup; warmup != nil {
		if warmup.Duration == nil {
			v.required(path.Child("warmup", "duration"), "warmup needs a duration")
		}
		v.duration(path.Child("warmup", "duration"), warmup.Duration)
		if percent := warmup.MinimumPercent; percent != nil && (percent.GetValue() < 0 || percent.GetValue() > 100) {
			v.invalid(CodeInvalidPercentage, path.Child("warmup", "minimumPercent"), percent.GetValue(), "percentage %g is not in 0-100", percent.GetValue())
		}
		if aggression := warmup.Aggression; aggression != nil && aggression.GetValue() <= 0 {
			v.invalid(CodeInvalidField, path.Child("warmup", "aggression"), aggression.GetValue(), "aggression must be greater than 0")
		}
	}
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for factor := uint64(2); factor*factor <= n; factor++ {
		if n%factor == 0 {
			return false
		}
	}
	return true
}

func (v *validator) connectionPool(path *field.Path, pool *networkingv1alpha3.ConnectionPoolSettings) {
	if pool == nil {
		return
	}
	if pool.Http == nil && pool.Tcp == nil {
		v.required(path, "connectionPool needs tcp or http settings")
		return
	}
	nonNegative := func(path *field.Path, value int32) {
		if value < 0 {
			v.invalid(CodeInvalidField, path, value, "%d is negative; use 0 or more", value)
		}
	}
	if http := pool.Http; http != nil {
		httpPath := path.Child("http")
		nonNegative(httpPath.Child("http1MaxPendingRequests"), http.Http1MaxPendingRequests)
		nonNegative(httpPath.Child("http2MaxRequests"), http.Http2MaxRequests)
		nonNegative(httpPath.Child("maxRequestsPerConnection"), http.MaxRequestsPerConnection)
		nonNegative(httpPath.Child("maxRetries"), http.MaxRetries)
		nonNegative(httpPath.Child("maxConcurrentStreams"), http.MaxConcurrentStreams)
		v.duration(httpPath.Child("idleTimeout"), http.IdleTimeout)
		if http.H2UpgradePolicy == networkingv1alpha3.ConnectionPoolSettings_HTTPSettings_UPGRADE && http.UseClientProtocol {
			v.forbidden(httpPath.Child("useClientProtocol"), "useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE")
		}
		if keepalive := http.Http2KeepAlive; keepalive != nil {
			if keepalive.Interval == nil {
				v.required(httpPath.Child("http2KeepAlive", "interval"), "http2KeepAlive needs an interval")
			}
			if keepalive.Timeout == nil {
				v.required(httpPath.Child("http2KeepAlive", "timeout"), "http2KeepAlive needs a timeout")
			}
			v.duration(httpPath.Child("http2KeepAlive", "interval"), keepalive.Interval)
			v.duration(httpPath.Child("http2KeepAlive", "timeout"), keepalive.Timeout)
		}
	}
	if tcp := pool.Tcp; tcp != nil {
		tcpPath := path.Child("tcp")
		nonNegative(tcpPath.Child("maxConnections"), tcp.MaxConnections)
		v.duration(tcpPath.Child("connectTimeout"), tcp.ConnectTimeout)
		v.duration(tcpPath.Child("maxConnectionDuration"), tcp.MaxConnectionDuration)
		// An idleTimeout of 0s disables the timeout.
		if tcp.IdleTimeout.AsDuration() != 0 {
			v.duration(tcpPath.Child("idleTimeout"), tcp.IdleTimeout)
		}
		if keepalive := tcp.TcpKeepalive; keepalive != nil {
			v.duration(tcpPath.Child("tcpKeepalive", "time"), keepalive.Time)
			v.duration(tcpPath.Child("tcpKeepalive", "interval"), keepalive.Interval)
		}
	}
}

func (v *validator) outlierDetection(path *field.Path, outlier *networkingv1alpha3.OutlierDetection) {
	if outlier == nil {
		return
	}
	v.duration(path.Child("interval"), outlier.Interval)
	v.duration(path.Child("baseEjectionTime"), outlier.BaseEjectionTime)
	if percent := outlier.MaxEjectionPercent; percent < 0 || percent > 100 {
		v.invalid(CodeInvalidPercentage, path.Child("maxEjectionPercent"), percent, "percentage %d is not in 0-100", percent)
	}
	if percent := outlier.MinHealthPercent; percent < 0 || percent > 100 {
		v.invalid(CodeInvalidPercentage, path.Child("minHealthPercent"), percent, "percentage %d is not in 0-100", percent)
	}
	if !outlier.SplitExternalLocalOriginErrors && outlier.ConsecutiveLocalOriginFailures.GetValue() > 0 {
		v.forbidden(path.Child("consecutiveLocalOriginFailures"), "consecutiveLocalOriginFailures only counts when splitExternalLocalOriginErrors is true")
	}
}

func (v *validator) clientTLS(path *field.Path, tls *networkingv1alpha3.ClientTLSSettings) {
	if tls == nil {
		return
	}
	simpleOrMutual := tls.Mode == networkingv1alpha3.ClientTLSSettings_SIMPLE || tls.Mode == networkingv1alpha3.ClientTLSSettings_MUTUAL
	if simpleOrMutual && tls.CredentialName != "" {
		if tls.ClientCertificate != "" || tls.PrivateKey != "" || tls.CaCertificates != "" || tls.CaCrl != "" {
			v.forbidden(path.Child("credentialName"), "credentialName cannot be used together with clientCertificate, privateKey, caCertificates or caCrl: the Secret holds them")
		}
		return
	}
	if tls.Mode == networkingv1alpha3.ClientTLSSettings_MUTUAL {
		if tls.ClientCertificate == "" {
			v.required(path.Child("clientCertificate"), "MUTUAL TLS needs credentialName (a Kubernetes Secret) or clientCertificate and privateKey")
		}
		if tls.PrivateKey == "" {
			v.required(path.Child("privateKey"), "MUTUAL TLS needs credentialName (a Kubernetes Secret) or clientCertificate and privateKey")
		}
	}
}
