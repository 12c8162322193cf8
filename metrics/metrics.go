// Package metrics defines Gatehouse's Prometheus metrics. Labels are kept
// low-cardinality on purpose: handler names, never paths or user names.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/filters"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// Label values known in advance. Init and InstrumentStore create these
// series at zero, so that rate() and increase() work from the first scrape
// instead of missing the first event of each kind.
const (
	LoginSuccess = "success"
	LoginDenied  = "denied"
	LoginError   = "error"

	ReasonScope = "scope" // a token's scopes do not cover the request
	ReasonPath  = "path"  // a request path refused before any decision

	ReloadSuccess = "success"
	ReloadFailure = "failure"
)

// LoginResults are the results of gatehouse_logins_total.
var LoginResults = []string{LoginSuccess, LoginDenied, LoginError}

// DenyReasons are the reasons of gatehouse_authz_denied_total: every
// filters.Kind, and the proxy's own.
var DenyReasons = []string{
	string(filters.KindEmail), string(filters.KindUnverified), string(filters.KindOrganization),
	string(filters.KindTeam), string(filters.KindUser), string(filters.KindGroup), string(filters.KindRevoked),
	ReasonScope, ReasonPath,
}

// DeviceResults are the results of gatehouse_device_authorizations_total.
var DeviceResults = []string{"issued", "approved", "denied", "expired", "ended", "token_issued"}

// StoreOps and StoreResults are the op and result labels of
// gatehouse_session_store_operations_total.
var (
	StoreOps     = []string{"get", "get_multi", "set", "add", "replace", "touch", "append", "delete"}
	StoreResults = []string{"ok", "miss", "exists", "error"}
)

// Metrics holds every collector, registered on its own registry so tests
// can build as many as they like.
type Metrics struct {
	Registry         *prometheus.Registry
	HTTPRequests     *prometheus.CounterVec   // handler, code
	HTTPDuration     *prometheus.HistogramVec // handler
	UpstreamDuration prometheus.Histogram
	Logins           *prometheus.CounterVec // provider, result
	AuthzDenied      *prometheus.CounterVec // reason
	StoreOps         *prometheus.CounterVec // store, op, result
	StoreDuration    *prometheus.HistogramVec
	DeviceAuths      *prometheus.CounterVec // result
	BuildInfo        *prometheus.GaugeVec   // version, commit, goversion; always 1
	ConfigReloads    *prometheus.CounterVec // result: success, failure
	ReloadOK         prometheus.Gauge       // 1 when the last reload (or the start) succeeded
	ReloadOKTime     prometheus.Gauge       // when the configuration was last loaded successfully
	CertExpiry       *prometheus.GaugeVec   // no labels; absent while TLS is off
	ProviderUp       *prometheus.GaugeVec   // provider; 1 when its discovery (or API) answered at the last /ready

	own []prometheus.Collector // Gatehouse's own collectors, without Go and process

	requests sync.Map // handler name → *requestSeries
}

// New creates and registers the metrics, with Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total", Help: "HTTP requests served, by handler and status code.",
		}, []string{"handler", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatehouse_http_request_duration_seconds", Help: "Time to serve HTTP requests, by handler.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"handler"}),
		UpstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_upstream_request_duration_seconds", Help: "Time from sending a request upstream to its response headers.",
			Buckets: prometheus.DefBuckets,
		}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_logins_total", Help: "Sign-in attempts by provider and result (success, denied, error).",
		}, []string{"provider", "result"}),
		AuthzDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authz_denied_total", Help: "Requests or sign-ins denied, by the kind of check that failed.",
		}, []string{"reason"}),
		StoreOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_session_store_operations_total", Help: "Session store operations by store, operation and result.",
		}, []string{"store", "op", "result"}),
		StoreDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatehouse_session_store_duration_seconds", Help: "Session store operation latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"store", "op"}),
		DeviceAuths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_device_authorizations_total", Help: "Device authorization outcomes.",
		}, []string{"result"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_build_info", Help: "Always 1; the labels say which build is running.",
		}, []string{"version", "commit", "goversion"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_config_reloads_total", Help: "Configuration reloads (config file, the files it names, TLS certificate and key, signing keys) by result.",
		}, []string{"result"}),
		ReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_config_last_reload_successful", Help: "1 when the last configuration reload succeeded (or none was tried since the start), 0 while a refused one is pending.",
		}),
		ReloadOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last successful configuration load.",
		}),
		CertExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_tls_certificate_expiry_timestamp_seconds", Help: "Unix time when the served TLS certificate (server.tls_cert_file) expires.",
		}, nil),
		ProviderUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_provider_up", Help: "1 when the sign-in provider was usable at the last readiness check, else 0.",
		}, []string{"provider"}),
	}
	m.own = []prometheus.Collector{m.HTTPRequests, m.HTTPDuration, m.UpstreamDuration, m.Logins, m.AuthzDenied,
		m.StoreOps, m.StoreDuration, m.DeviceAuths, m.BuildInfo, m.ConfigReloads, m.ReloadOK, m.ReloadOKTime, m.CertExpiry, m.ProviderUp}
	m.Registry.MustRegister(m.own...)
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.SetBuildInfo("unknown", "unknown")
	// The process starts only with a configuration that loaded.
	m.ReloadOK.Set(1)
	m.ReloadOKTime.SetToCurrentTime()
	for _, r := range []string{ReloadSuccess, ReloadFailure} {
		m.ConfigReloads.WithLabelValues(r)
	}
	return m
}

// SetBuildInfo sets gatehouse_build_info{version,commit,goversion} to 1,
// replacing the series of an earlier call.
func (m *Metrics) SetBuildInfo(version, commit string) {
	if m == nil {
		return
	}
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
}

// Init creates at zero the series whose label values are known in advance:
// gatehouse_logins_total for each provider and result,
// gatehouse_authz_denied_total for each reason and
// gatehouse_device_authorizations_total for each result. providers are the
// names sign-ins are counted under (github, gitlab, google, microsoft and
// the OIDC names). Calling it again (after a reload) adds new providers;
// series of providers no longer configured stay at their last value.
func (m *Metrics) Init(providers []string) {
	if m == nil {
		return
	}
	for _, p := range providers {
		for _, r := range LoginResults {
			m.Logins.WithLabelValues(p, r)
		}
	}
	for _, r := range DenyReasons {
		m.AuthzDenied.WithLabelValues(r)
	}
	for _, r := range DeviceResults {
		m.DeviceAuths.WithLabelValues(r)
	}
}

// ConfigReload counts a configuration reload: err nil when the new
// configuration (with its files, TLS certificate and keys) was applied,
// else the reason it was refused. gatehouse_config_last_reload_successful
// stays 0 until a later reload succeeds.
func (m *Metrics) ConfigReload(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.ConfigReloads.WithLabelValues(ReloadFailure).Inc()
		m.ReloadOK.Set(0)
		return
	}
	m.ConfigReloads.WithLabelValues(ReloadSuccess).Inc()
	m.ReloadOK.Set(1)
	m.ReloadOKTime.SetToCurrentTime()
}

// SetCertificateExpiry records when the served TLS certificate expires
// (its leaf's NotAfter), at start and after each reload that loads one.
func (m *Metrics) SetCertificateExpiry(notAfter time.Time) {
	if m == nil {
		return
	}
	m.CertExpiry.WithLabelValues().Set(float64(notAfter.Unix()))
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Login counts a sign-in outcome.
func (m *Metrics) Login(provider, result string) {
	if m != nil {
		m.Logins.WithLabelValues(provider, result).Inc()
	}
}

// Denied counts a denial by reason.
func (m *Metrics) Denied(reason string) {
	if m != nil {
		m.AuthzDenied.WithLabelValues(reason).Inc()
	}
}

// DeviceAuth counts a device-flow outcome.
func (m *Metrics) DeviceAuth(result string) {
	if m != nil {
		m.DeviceAuths.WithLabelValues(result).Inc()
	}
}

// Request records one served request.
func (m *Metrics) Request(handler string, code int, d time.Duration) {
	if m == nil {
		return
	}
	rs := m.requestSeries(handler)
	rs.counter(m, handler, code).Inc()
	rs.duration.Observe(d.Seconds())
}

// requestSeries are the series of one handler, looked up once: the
// handler names are a small fixed set, and WithLabelValues (hashing the
// label values under a lock) on every request is measurable.
type requestSeries struct {
	duration prometheus.Observer
	codes    [600]atomic.Pointer[prometheus.Counter] // by status code, filled on first use
}

func (m *Metrics) requestSeries(handler string) *requestSeries {
	if v, ok := m.requests.Load(handler); ok {
		return v.(*requestSeries)
	}
	v, _ := m.requests.LoadOrStore(handler, &requestSeries{duration: m.HTTPDuration.WithLabelValues(handler)})
	return v.(*requestSeries)
}

func (rs *requestSeries) counter(m *Metrics, handler string, code int) prometheus.Counter {
	if code < 0 || code >= len(rs.codes) {
		return m.HTTPRequests.WithLabelValues(handler, strconv.Itoa(code))
	}
	if c := rs.codes[code].Load(); c != nil {
		return *c
	}
	// Two requests racing here store the same child series.
	c := m.HTTPRequests.WithLabelValues(handler, strconv.Itoa(code))
	rs.codes[code].Store(&c)
	return c
}

// InstrumentStore wraps a store so its operations are counted and timed;
// the counters of every op and result start at zero.
func (m *Metrics) InstrumentStore(s sessionstore.Store, name string) sessionstore.Store {
	if m == nil {
		return s
	}
	i := &instrumented{Store: s}
	// The label sets are fixed: look each series up once here, not with
	// WithLabelValues (hashing every label) on every operation.
	for o, op := range StoreOps {
		for r, result := range StoreResults {
			i.count[o][r] = m.StoreOps.WithLabelValues(name, op, result)
		}
		i.duration[o] = m.StoreDuration.WithLabelValues(name, op)
	}
	return i
}

// Indexes in StoreOps (in its order; metrics_test checks it).
const (
	opGet = iota
	opGetMulti
	opSet
	opAdd
	opReplace
	opTouch
	opAppend
	opDelete
	numOps
)

// Indexes in StoreResults (in its order).
const (
	resultOK = iota
	resultMiss
	resultExists
	resultError
	numResults
)

type instrumented struct {
	sessionstore.Store
	count    [numOps][numResults]prometheus.Counter // by op and result
	duration [numOps]prometheus.Observer            // by op
}

func (i *instrumented) observe(op int, start time.Time, err error) {
	result := resultOK
	switch {
	case err == nil:
	case errors.Is(err, sessionstore.ErrNotFound):
		result = resultMiss
	case errors.Is(err, sessionstore.ErrExists):
		result = resultExists
	default:
		result = resultError
	}
	i.count[op][result].Inc()
	i.duration[op].Observe(time.Since(start).Seconds())
}

// GetFew implements sessionstore.FewGetter, counted as get_multi, so the
// session hot path keeps the inner store's fast path.
func (i *instrumented) GetFew(ctx context.Context, keys [sessionstore.MaxFew]string) ([sessionstore.MaxFew][]byte, error) {
	start := time.Now()
	v, err := sessionstore.GetFew(ctx, i.Store, keys)
	i.observe(opGetMulti, start, err)
	return v, err
}

func (i *instrumented) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := i.Store.Get(ctx, key)
	i.observe(opGet, start, err)
	return v, err
}

func (i *instrumented) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	start := time.Now()
	v, err := i.Store.GetMulti(ctx, keys)
	i.observe(opGetMulti, start, err)
	return v, err
}

func (i *instrumented) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Set(ctx, key, value, ttl)
	i.observe(opSet, start, err)
	return err
}

func (i *instrumented) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Add(ctx, key, value, ttl)
	i.observe(opAdd, start, err)
	return err
}

func (i *instrumented) Replace(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Replace(ctx, key, value, ttl)
	i.observe(opReplace, start, err)
	return err
}

func (i *instrumented) Touch(ctx context.Context, key string, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Touch(ctx, key, ttl)
	i.observe(opTouch, start, err)
	return err
}

func (i *instrumented) Append(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Append(ctx, key, value, ttl)
	i.observe(opAppend, start, err)
	return err
}

func (i *instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := i.Store.Delete(ctx, key)
	i.observe(opDelete, start, err)
	return err
}

// SetProviderUp records whether a provider was usable at the last check.
func (m *Metrics) SetProviderUp(provider string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.ProviderUp.WithLabelValues(provider).Set(v)
}
