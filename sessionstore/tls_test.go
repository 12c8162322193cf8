package sessionstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and localhost, a
// client certificate, and a CA that signed neither, as PEM files.
type testPKI struct {
	dir                                          string
	ca, otherCA, serverCert, serverKey           string
	clientCert, clientKey, notPEM, missing, junk string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	p := testPKI{dir: dir}
	write := func(name string, blocks ...*pem.Block) string {
		path := filepath.Join(dir, name)
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyPEM := func(k *ecdsa.PrivateKey) *pem.Block {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	}
	serial := int64(1)
	sign := func(tmpl, parent *x509.Certificate, pub, signer any) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		return sign(tmpl, tmpl, &k.PublicKey, k), k
	}
	ca, caKey := newCA("test CA")
	other, _ := newCA("other CA")
	p.ca = write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	p.otherCA = write("other-ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: other.Raw})

	sk := key()
	srv := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "memcached"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}, ca, &sk.PublicKey, caKey)
	p.serverCert = write("server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: srv.Raw})
	p.serverKey = write("server-key.pem", keyPEM(sk))

	ck := key()
	cli := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "gatehouse"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &ck.PublicKey, caKey)
	p.clientCert = write("client.pem", &pem.Block{Type: "CERTIFICATE", Bytes: cli.Raw})
	p.clientKey = write("client-key.pem", keyPEM(ck))

	p.notPEM = filepath.Join(dir, "not.pem")
	if err := os.WriteFile(p.notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.missing = filepath.Join(dir, "missing.pem")
	p.junk = p.notPEM
	return p
}

// startTLSMemcached runs memcached with TLS (and, when requireClientCert,
// refusing clients without a certificate from the test CA).
func startTLSMemcached(t *testing.T, p testPKI, requireClientCert bool) *memcached {
	t.Helper()
	opts := "ssl_chain_cert=" + p.serverCert + ",ssl_key=" + p.serverKey
	probe := &tls.Config{InsecureSkipVerify: true}
	if requireClientCert {
		opts += ",ssl_ca_cert=" + p.ca + ",ssl_verify_mode=2"
		pair, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
		if err != nil {
			t.Fatal(err)
		}
		probe.Certificates = []tls.Certificate{pair}
	}
	m := &memcached{t: t, port: freePort(t), args: []string{"-Z", "-o", opts}, probeTLS: probe}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func tlsStore(t *testing.T, tc TLSConfig, replicas int, servers ...string) *Memcache {
	t.Helper()
	cfg := testConfig(servers...)
	cfg.TLS, cfg.Replicas = tc, replicas
	return newStoreWith(t, probeEvery, cfg)
}

func TestMemcacheTLS(t *testing.T) {
	p := newTestPKI(t)
	plain := startTLSMemcached(t, p, false)
	mutual := startTLSMemcached(t, p, true)
	ctx := context.Background()
	tests := []struct {
		name   string
		server *memcached
		tls    TLSConfig
		works  bool
	}{
		{"verified against ca_file", plain, TLSConfig{Enabled: true, CAFile: p.ca}, true},
		{"server_name in the certificate", plain, TLSConfig{Enabled: true, CAFile: p.ca, ServerName: "localhost"}, true},
		{"server_name not in the certificate", plain, TLSConfig{Enabled: true, CAFile: p.ca, ServerName: "other.example"}, false},
		{"certificate from another CA", plain, TLSConfig{Enabled: true, CAFile: p.otherCA}, false},
		{"system roots only", plain, TLSConfig{Enabled: true}, false},
		{"insecure_skip_verify", plain, TLSConfig{Enabled: true, CAFile: p.otherCA, InsecureSkipVerify: true}, true},
		{"TLS off against a TLS port", plain, TLSConfig{}, false},
		{"client certificate required and given", mutual, TLSConfig{Enabled: true, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}, true},
		{"client certificate required, none given", mutual, TLSConfig{Enabled: true, CAFile: p.ca}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tlsStore(t, tt.tls, 1, tt.server.addr())
			err := s.Set(ctx, "k-"+tt.name, []byte("v"), time.Hour)
			if !tt.works {
				if err == nil {
					t.Fatal("set worked, want a store error")
				}
				if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, ErrNotFound) {
					t.Fatalf("get: %v, want a store error", err)
				}
				// The readiness probe goes through the same TLS settings.
				if err := s.Ping(ctx); err == nil {
					t.Fatal("ready although no connection can be made")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get(ctx, "k-"+tt.name); err != nil || string(v) != "v" {
				t.Fatalf("get: %q, %v", v, err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The store's contract holds over TLS, with replication.
func TestMemcacheTLSContract(t *testing.T) {
	p := newTestPKI(t)
	a, b := startTLSMemcached(t, p, false), startTLSMemcached(t, p, false)
	tc := TLSConfig{Enabled: true, CAFile: p.ca}
	testStoreContract(t, func(t *testing.T) Store { return tlsStore(t, tc, 2, a.addr(), b.addr()) }, nil)
}

// The health probe and flush_all speak TLS too: a TLS node that missed
// writes while set aside is found again, flushed and used.
func TestMemcacheTLSProbeAndFlush(t *testing.T) {
	p := newTestPKI(t)
	a, b := startTLSMemcached(t, p, true), startTLSMemcached(t, p, true)
	s := tlsStore(t, TLSConfig{Enabled: true, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}, 1, a.addr(), b.addr())
	ctx := context.Background()
	keys := keysOn(s, a.addr(), 3, "onA")
	for _, k := range keys {
		if err := s.Set(ctx, k, []byte("old"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	a.pause()
	_, _ = s.Get(ctx, keys[0]) // sets A aside
	if err := s.Delete(ctx, keys[1]); err != nil {
		t.Fatal(err)
	}
	a.resume()
	waitUntil(t, 10*time.Second, "A to be used again", func() bool { return s.ring.upMembers() == 2 })
	for _, k := range keys {
		if v, err := s.Get(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s on the node that missed a delete: %q, %v; want it flushed", k, v, err)
		}
	}
}
