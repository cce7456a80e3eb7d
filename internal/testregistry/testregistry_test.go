package testregistry

import (
	"net/http"
	"testing"
)

func TestStartStop(t *testing.T) {
	r := Start(t)
	resp, err := http.Get("http://" + r.Host() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	r.Stop()
	if _, err := http.Get("http://" + r.Host() + "/v2/"); err == nil {
		t.Fatal("registry still answers after Stop")
	}
	r.Stop() // idempotent
}
