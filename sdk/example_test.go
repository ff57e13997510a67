package sdk_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/waybill-iot/waybill/sdk"
)

// Dispatch signs an order for truck-0001; the truck verifies it against the fleet CA and applies it once.
func Example_order() {
	ca, dispatchCert, dispatchKey := examplePKI() // in real life: `waybill pki init` and `pki issue`

	// Dispatch.
	signer, err := sdk.NewSigner(sdk.SignerConfig{Certificate: dispatchCert, Key: dispatchKey})
	if err != nil {
		panic(err)
	}
	order := &sdk.Order{
		ID: "ord-42", Revision: 1, Truck: "truck-0001",
		Created: time.Now(), Expires: time.Now().Add(24 * time.Hour),
		Recipient: "Ada Lovelace", Address: "Unter den Linden 1, Berlin",
		Lat: 52.5170365, Lon: 13.3888599, RadiusM: 150,
	}
	payload, err := signer.SignOrder(order)
	if err != nil {
		panic(err)
	}
	topic, _ := sdk.Topics{}.Order(order.Truck, order.ID)

	// The truck.
	verifier, err := sdk.NewVerifier(sdk.VerifierConfig{CA: []*x509.Certificate{ca}})
	if err != nil {
		panic(err)
	}
	msg, err := verifier.Verify(context.Background(), topic, payload)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: order %s rev %d for %s, signed by %s (%s)\n",
		topic, msg.Order.ID, msg.Order.Revision, msg.Order.Truck, msg.Signer.Name, msg.Signer.Role)

	// The broker delivers it again: a duplicate, acknowledged but not applied twice.
	_, err = verifier.Verify(context.Background(), topic, payload)
	fmt.Println("again:", errors.Is(err, sdk.ReasonDuplicate))

	// One flipped bit anywhere, and it is refused.
	payload[len(payload)/2] ^= 0x10
	_, err = verifier.Verify(context.Background(), topic, payload)
	var rej *sdk.RejectError
	fmt.Println("altered:", errors.As(err, &rej))
	// Output:
	// fleet/trucks/truck-0001/orders/ord-42: order ord-42 rev 1 for truck-0001, signed by dispatch-1 (dispatch)
	// again: true
	// altered: true
}

// examplePKI makes a fleet CA and a dispatch certificate the way sdk/pki does: CN = name, OU = role.
func examplePKI() (ca, dispatch *x509.Certificate, dispatchKey crypto.Signer) {
	mk := func(tmpl, parent *x509.Certificate, pub, signer any) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			panic(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		return c
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	ca = mk(caTmpl, caTmpl, caKey.Public(), caKey)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dispatch = mk(&x509.Certificate{SerialNumber: big.NewInt(2),
		Subject:   pkix.Name{CommonName: "dispatch-1", OrganizationalUnit: []string{"dispatch"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		ca, key.Public(), caKey)
	return ca, dispatch, key
}
