package main

import (
	"context"
	"crypto/sha256"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// reloadPoll is how often the config file is checked for changes. Polling
// (rather than inotify) also sees Kubernetes' ConfigMap updates, which
// swap a symlink instead of writing the file.
const reloadPoll = 2 * time.Second

// watchConfig reloads the configuration when its file changes or on
// SIGHUP. Filters, allowed lists, providers, policies, headers and tokens
// take effect at once without dropping connections or sessions; an invalid
// file is refused and the old configuration keeps serving.
func watchConfig(ctx context.Context, a *app, running *Loaded, environ []string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(reloadPoll)
	defer tick.Stop()
	last := fileHash(running.File)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if h := fileHash(running.File); h == last {
				continue
			}
		}
		last = fileHash(running.File)
		if next := reload(a, running, environ); next != nil {
			running = next
		}
	}
}

// reload loads and applies the file once; it returns the new
// configuration, or nil when it was refused.
func reload(a *app, running *Loaded, environ []string) *Loaded {
	next, err := loadConfig(running.File, environ)
	if err != nil {
		a.log.Error("configuration reload refused; the previous configuration keeps serving",
			"file", running.File, "problems", strings.Split(err.Error(), "\n"))
		return nil
	}
	for _, key := range restartOnly(running.Config, next.Config) {
		a.log.Warn("configuration change needs a restart to take effect; the running value is kept", "key", key)
	}
	// Keep what cannot change while running.
	next.Config.Server.Listen = running.Config.Server.Listen
	next.Config.Server.MetricsListen = running.Config.Server.MetricsListen
	next.Config.Server.TLSCertFile = running.Config.Server.TLSCertFile
	next.Config.Server.TLSKeyFile = running.Config.Server.TLSKeyFile
	next.Config.Session.Store = running.Config.Session.Store
	h, err := a.build(next)
	if err != nil {
		a.log.Error("configuration reload refused; the previous configuration keeps serving", "err", err)
		return nil
	}
	a.swap(h)
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
	if old.Server.TLSCertFile != next.Server.TLSCertFile || old.Server.TLSKeyFile != next.Server.TLSKeyFile {
		keys = append(keys, "server.tls_cert_file")
	}
	if old.Session.Store.Type != next.Session.Store.Type || strings.Join(old.Session.Store.Memcache.Servers, ",") != strings.Join(next.Session.Store.Memcache.Servers, ",") {
		keys = append(keys, "session.store")
	}
	return keys
}

func fileHash(path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}
