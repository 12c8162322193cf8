// Package metrics defines Gatehouse's Prometheus metrics. Labels are kept
// low-cardinality on purpose: handler names, never paths or user names.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/sessionstore"
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
	}
	m.Registry.MustRegister(m.HTTPRequests, m.HTTPDuration, m.UpstreamDuration, m.Logins, m.AuthzDenied,
		m.StoreOps, m.StoreDuration, m.DeviceAuths,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
	if m != nil {
		m.HTTPRequests.WithLabelValues(handler, strconv.Itoa(code)).Inc()
		m.HTTPDuration.WithLabelValues(handler).Observe(d.Seconds())
	}
}

// InstrumentStore wraps a store so its operations are counted and timed.
func (m *Metrics) InstrumentStore(s sessionstore.Store, name string) sessionstore.Store {
	if m == nil {
		return s
	}
	return &instrumented{Store: s, name: name, m: m}
}

type instrumented struct {
	sessionstore.Store
	name string
	m    *Metrics
}

func (i *instrumented) observe(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, sessionstore.ErrNotFound):
		result = "miss"
	case errors.Is(err, sessionstore.ErrExists):
		result = "exists"
	default:
		result = "error"
	}
	i.m.StoreOps.WithLabelValues(i.name, op, result).Inc()
	i.m.StoreDuration.WithLabelValues(i.name, op).Observe(time.Since(start).Seconds())
}

func (i *instrumented) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := i.Store.Get(ctx, key)
	i.observe("get", start, err)
	return v, err
}

func (i *instrumented) GetMulti(ctx context.Context, keys []string) (map[string][]byte, error) {
	start := time.Now()
	v, err := i.Store.GetMulti(ctx, keys)
	i.observe("get_multi", start, err)
	return v, err
}

func (i *instrumented) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Set(ctx, key, value, ttl)
	i.observe("set", start, err)
	return err
}

func (i *instrumented) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Add(ctx, key, value, ttl)
	i.observe("add", start, err)
	return err
}

func (i *instrumented) Replace(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Replace(ctx, key, value, ttl)
	i.observe("replace", start, err)
	return err
}

func (i *instrumented) Touch(ctx context.Context, key string, ttl time.Duration) error {
	start := time.Now()
	err := i.Store.Touch(ctx, key, ttl)
	i.observe("touch", start, err)
	return err
}

func (i *instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := i.Store.Delete(ctx, key)
	i.observe("delete", start, err)
	return err
}
