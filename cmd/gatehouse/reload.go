package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"hash"
	"io"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"
)

// reloadPoll is how often the watched files are checked for changes.
// Polling (rather than inotify) also sees Kubernetes' ConfigMap and Secret
// updates, which swap a symlink instead of writing the file.
const reloadPoll = 2 * time.Second

// watchConfig reloads the configuration when any file it depends on
// changes — the config file and every file it names (allowed e-mails,
// *_file secrets, signing keys, the TLS certificate and key) — or on
// SIGHUP. Filters, allowed lists, providers, policies, headers, tokens and
// the TLS certificate take effect at once without dropping connections or
// sessions; an invalid file is refused and the old configuration keeps
// serving. every is the polling interval (reloadPoll in production).
func watchConfig(ctx context.Context, a *app, running *Loaded, environ []string, every time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := running.stamp
	for {
		var cur [32]byte
		select {
		case <-ctx.Done():
			return
		case <-hup:
			cur = filesHash(running.watched())
		case <-tick.C:
			if cur = filesHash(running.watched()); cur == last {
				continue
			}
		}
		// A refused state is not retried until something changes again.
		// A loaded one is fingerprinted as it was read, so a change made
		// while reloading is seen at the next poll.
		last = cur
		if next := reload(a, running, environ); next != nil {
			running, last = next, next.stamp
		}
	}
}

// reload loads and applies the configuration once; it returns the new
// configuration, or nil when it was refused.
func reload(a *app, running *Loaded, environ []string) *Loaded {
	refuse := func(err error) *Loaded {
		a.log.Error("configuration reload refused; the previous configuration keeps serving",
			"file", running.File, "problems", strings.Split(err.Error(), "\n"))
		a.metrics.ConfigReload(err)
		return nil
	}
	next, err := loadConfig(running.File, environ)
	if err != nil {
		return refuse(err)
	}
	for _, key := range restartOnly(running.Config, next.Config) {
		a.log.Warn("configuration change needs a restart to take effect; the running value is kept", "key", key)
	}
	// Keep what cannot change while running.
	next.Config.Server.Listen = running.Config.Server.Listen
	next.Config.Server.MetricsListen = running.Config.Server.MetricsListen
	if (running.Config.Server.TLSCertFile == "") != (next.Config.Server.TLSCertFile == "") {
		next.Config.Server.TLSCertFile = running.Config.Server.TLSCertFile
		next.Config.Server.TLSKeyFile = running.Config.Server.TLSKeyFile
	}
	next.Config.Session.Store = running.Config.Session.Store
	cert, err := loadCertificate(next)
	if err != nil {
		return refuse(err)
	}
	h, err := a.build(next)
	if err != nil {
		return refuse(err)
	}
	a.swap(h)
	a.metrics.ConfigReload(nil)
	a.setCertificate(cert)
	for _, w := range next.Warnings {
		if !slices.Contains(running.Warnings, w) {
			a.log.Warn(w)
		}
	}
	a.log.Info("configuration reloaded", "file", running.File)
	return next
}

// restartOnly lists settings that changed but only apply at start.
func restartOnly(old, next Config) []string {
	var keys []string
	if old.Server.Listen != next.Server.Listen {
		keys = append(keys, "server.listen")
	}
	if old.Server.MetricsListen != next.Server.MetricsListen {
		keys = append(keys, "server.metrics_listen")
	}
	// A new certificate and key apply at once; turning HTTPS on or off
	// needs a restart.
	if (old.Server.TLSCertFile == "") != (next.Server.TLSCertFile == "") {
		keys = append(keys, "server.tls_cert_file")
	}
	if !reflect.DeepEqual(old.Session.Store, next.Session.Store) {
		keys = append(keys, "session.store")
	}
	return keys
}

// loadCertificate reads the configured TLS pair; nil when TLS is off.
func loadCertificate(l *Loaded) (*tls.Certificate, error) {
	c := l.Config.Server
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	return &cert, nil
}

// filesHash fingerprints the names and contents of files; a file that
// cannot be read counts as missing, which is a change too.
func filesHash(paths []string) [32]byte {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		stampFile(h, p, b, err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// stampFile adds one file, read as content or with err, to a fingerprint.
func stampFile(h hash.Hash, path string, content []byte, err error) {
	_, _ = io.WriteString(h, path+"\x00")
	if err != nil {
		_, _ = h.Write([]byte{0})
		return
	}
	sum := sha256.Sum256(content)
	_, _ = h.Write([]byte{1})
	_, _ = h.Write(sum[:])
}
