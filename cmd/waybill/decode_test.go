package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
)

// decodeFleet writes a CA and two certificates (made with crypto/x509 following the identity contract:
// CN = name, OU = role) into a PKI-like directory, and returns signers for them.
func decodeFleet(t *testing.T) (dir string, dispatch, truck *sdk.Signer) {
	t.Helper()
	dir = t.TempDir()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM := func(path string, der []byte) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePEM(filepath.Join(dir, "ca.crt"), caDER)
	issue := func(serial int64, name, role string) *sdk.Signer {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial),
			Subject:   pkix.Name{CommonName: name, OrganizationalUnit: []string{role}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(filepath.Join(dir, "issued", name+".crt"), der)
		cert, _ := x509.ParseCertificate(der)
		s, err := sdk.NewSigner(sdk.SignerConfig{Certificate: cert, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return dir, issue(2, "dispatch-1", "dispatch"), issue(3, "truck-0001", "truck")
}

func runDecodeCmd(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), streams{bytes.NewReader(stdin), &out, &errb}, append([]string{"decode"}, args...))
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "msg.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecodeOrder(t *testing.T) {
	dir, dispatch, _ := decodeFleet(t)
	o := &sdk.Order{ID: "ord-7", Revision: 2, Truck: "truck-0001", Created: time.Now(),
		Expires: time.Now().Add(time.Hour), Recipient: "R. Ecipient", Address: "Main St 1", Lat: 48.1, Lon: 11.5,
		RadiusM: 100, Status: sdk.OrderCancelled}
	msg, err := dispatch.SignOrder(o)
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, msg)
	ca := filepath.Join(dir, "ca.crt")

	code, out, stderr := runDecodeCmd(t, nil, "--ca", ca, file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Size     int
		Envelope struct {
			Type, Sender, Alg, Signature string
			Seq                          uint64
			BodySHA256                   string `json:"body_sha256"`
			Certificate                  struct{ Name, Role string }
		}
		Body         sdk.Order
		Verification struct {
			OK     bool
			Topic  string
			Signer struct{ Name, Role string }
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	h, _ := o.Hash()
	if got.Size != len(msg) || got.Envelope.Type != "order" || got.Envelope.Sender != "dispatch-1" ||
		got.Envelope.Certificate.Role != "dispatch" || got.Envelope.BodySHA256 != hex.EncodeToString(h[:]) ||
		got.Body.ID != "ord-7" || got.Body.Status != sdk.OrderCancelled || got.Body.Address != "Main St 1" ||
		!got.Verification.OK || got.Verification.Topic != "fleet/trucks/truck-0001/orders/ord-7" ||
		got.Verification.Signer.Role != "dispatch" {
		t.Fatalf("unexpected output:\n%s", out)
	}

	// Hex on standard input, without verification.
	code, out, _ = runDecodeCmd(t, []byte(hex.EncodeToString(msg[:40])+"\n  "+hex.EncodeToString(msg[40:])), "--hex", "-")
	if code != 0 || !strings.Contains(out, `"recipient": "R. Ecipient"`) || strings.Contains(out, "verification") {
		t.Fatalf("hex: exit %d\n%s", code, out)
	}

	// One bit of the signature altered: shown, refused, exit 1.
	msg[len(msg)-10] ^= 1
	code, out, stderr = runDecodeCmd(t, nil, "--ca", ca, writeFile(t, msg))
	if code != 1 || !strings.Contains(out, `"reason": "bad signature"`) || !strings.Contains(stderr, "refused") {
		t.Fatalf("altered signature: exit %d\n%s\n%s", code, out, stderr)
	}
	// One bit of the body altered so that it no longer decodes: the envelope is still shown.
	msg[len(msg)-10] ^= 1
	msg[len(msg)-70] ^= 1
	code, out, stderr = runDecodeCmd(t, nil, "--ca", ca, writeFile(t, msg))
	if code != 1 || !strings.Contains(out, `"body_error"`) || !strings.Contains(out, `"sender": "dispatch-1"`) ||
		!strings.Contains(out, "give --topic") {
		t.Fatalf("altered body: exit %d\n%s\n%s", code, out, stderr)
	}
}

func TestDecodeTelemetryNeedsCerts(t *testing.T) {
	dir, _, truck := decodeFleet(t)
	fixes := make([]sdk.TelemetryFix, 3)
	for i := range fixes {
		fixes[i] = sdk.TelemetryFix{Seq: uint64(10 + i), Fix: sdk.Fix{Time: time.Now().Add(time.Duration(i) * time.Second),
			Lat: 52.5 + float64(i)*1e-4, Lon: 13.4, Speed: 8.5, Mode: 3, Has: sdk.FixSpeed}}
	}
	msg, err := truck.SignTelemetry(&sdk.Telemetry{Epoch: sdk.Epoch{0xab}, Fixes: fixes})
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, msg)
	ca := filepath.Join(dir, "ca.crt")
	// The CA alone does not know the truck's key: telemetry carries no certificate.
	code, out, _ := runDecodeCmd(t, nil, "--ca", ca, file)
	if code != 1 || !strings.Contains(out, `"reason": "unknown signer"`) {
		t.Fatalf("without --certs: exit %d\n%s", code, out)
	}
	code, out, stderr := runDecodeCmd(t, nil, "--ca", ca, "--certs", dir, file)
	if code != 0 || !strings.Contains(out, `"ok": true`) || !strings.Contains(out, `"speed_mps": 8.5`) ||
		!strings.Contains(out, `"epoch": "ab00000000000000"`) || !strings.Contains(out, `"seq": 12`) {
		t.Fatalf("with --certs: exit %d\n%s\n%s", code, out, stderr)
	}
	// A topic that does not match the sender.
	code, out, _ = runDecodeCmd(t, nil, "--ca", ca, "--certs", dir, "--topic", "fleet/trucks/truck-0002/telemetry", file)
	if code != 1 || !strings.Contains(out, `"reason": "wrong sender"`) {
		t.Fatalf("other topic: exit %d\n%s", code, out)
	}
}

func TestDecodeBadInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		args  []string
		stdin []byte
		code  int
		want  string
	}{
		{"help", []string{"--help"}, nil, 0, "Usage: waybill decode"},
		{"no file", nil, nil, 2, "exactly one FILE"},
		{"two files", []string{"a", "b"}, nil, 2, "exactly one FILE"},
		{"certs without ca", []string{"--certs", "x", "-"}, nil, 2, "--certs needs --ca"},
		{"bad now", []string{"--now", "yesterday", "-"}, nil, 2, "--now"},
		{"missing file", []string{"/nonexistent/msg"}, nil, 1, "no such file"},
		{"garbage", []string{"-"}, []byte("hello, world"), 1, "malformed"},
		{"empty", []string{"-"}, nil, 1, "malformed"},
		{"bad hex", []string{"--hex", "-"}, []byte("zz"), 1, "not hex"},
		{"newer version", []string{"--hex", "-"}, []byte("8b02"), 1, "unsupported version"},
	} {
		code, out, stderr := runDecodeCmd(t, c.stdin, c.args...)
		if code != c.code || !strings.Contains(out+stderr, c.want) {
			t.Errorf("%s: exit %d, want %d with %q\n%s%s", c.name, code, c.code, c.want, out, stderr)
		}
	}
}

// TestDecodeReceipt: a receipt shows as JSON (truck, epochs with hex epoch and ranges) and verifies on the
// topic derived from its body; a dispatch status verifies on the dispatch status topic.
func TestDecodeReceipt(t *testing.T) {
	dir, dispatch, _ := decodeFleet(t)
	rc := &sdk.Receipt{Truck: "truck-0001", Epochs: []sdk.ReceiptEpoch{{Epoch: sdk.Epoch{0xab},
		Ranges: []sdk.SeqRange{{First: 1, Last: 60}, {First: 62, Last: 62}}}}}
	msg, err := dispatch.SignReceipt(rc, true)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	code, out, stderr := runDecodeCmd(t, nil, "--ca", ca, writeFile(t, msg))
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	var got struct {
		Envelope     struct{ Type, Sender string }
		Body         sdk.Receipt
		Verification struct {
			OK    bool
			Topic string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Envelope.Type != "receipt" || got.Envelope.Sender != "dispatch-1" || got.Body.Truck != "truck-0001" ||
		len(got.Body.Epochs) != 1 || got.Body.Epochs[0].Epoch != (sdk.Epoch{0xab}) || len(got.Body.Epochs[0].Ranges) != 2 ||
		got.Body.Epochs[0].Ranges[1] != (sdk.SeqRange{First: 62, Last: 62}) || !got.Verification.OK ||
		got.Verification.Topic != "fleet/trucks/truck-0001/receipts" || !strings.Contains(out, `"epoch": "ab00000000000000"`) {
		t.Fatalf("unexpected output:\n%s", out)
	}
	// Without the certificate a receipt needs --certs, like telemetry.
	msg, err = dispatch.SignReceipt(rc, false)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runDecodeCmd(t, nil, "--ca", ca, "--certs", dir, writeFile(t, msg)); code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("receipt without certificate, with --certs: exit %d\n%s", code, out)
	}
	st, err := dispatch.SignStatus(&sdk.Status{State: sdk.StateOnline, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runDecodeCmd(t, nil, "--ca", ca, writeFile(t, st))
	if code != 0 || !strings.Contains(out, `"topic": "fleet/dispatch/dispatch-1/status"`) {
		t.Fatalf("dispatch status: exit %d\n%s\n%s", code, out, stderr)
	}
}

// TestDecodeStatusReadable (issue 11.9): durations are seconds with the unit in the key, not nanoseconds,
// and the verified signer is a name, a role and a key id, not a Go struct.
func TestDecodeStatusReadable(t *testing.T) {
	dir, _, truck := decodeFleet(t)
	st, err := truck.SignStatus(&sdk.Status{State: sdk.StateOnline, Time: time.Now(), Health: &sdk.Health{
		FixAge: 2500 * time.Millisecond, Sats: 9, QueueDepth: 3, OldestAge: 90 * time.Second, ClockSkew: -3 * time.Second,
		Odometer: 123456}})
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runDecodeCmd(t, nil, "--ca", filepath.Join(dir, "ca.crt"), writeFile(t, st))
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	for _, want := range []string{`"fix_age_s": 2.5`, `"oldest_age_s": 90`, `"clock_skew_s": -3`, `"odometer_m": 123456`,
		`"name": "truck-0001"`, `"role": "truck"`, `"key_id": "`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	for _, bad := range []string{`"fix_age":`, `"Name"`, `"Role"`, `2500000000`} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %s", bad)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
