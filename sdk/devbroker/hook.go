package devbroker

import (
	"bytes"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// hook puts the certificate identity in charge of username, client id and ACL.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "waybill-mtls-acl" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func identity(cl *mqtt.Client) (pki.Identity, bool) {
	ic, ok := cl.Net.Conn.(*identConn)
	if !ok {
		return pki.Identity{}, false
	}
	return ic.id, true
}

// OnConnect replaces the username with the certificate's CN, assigns the CN as client id when the client
// sent none, and refuses a different client id with reason 133 (Mosquitto silently replaces it: here a
// misconfigured client learns at once). A will on a topic the identity may not write is dropped, as
// Mosquitto drops it when it fires.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	id, ok := identity(cl)
	if !ok {
		return packets.ErrNotAuthorized
	}
	switch {
	case pk.Connect.ClientIdentifier == "":
		cl.ID = id.Name
		if cl.Properties.ProtocolVersion == 5 {
			cl.Properties.Props.AssignedClientID = id.Name
		}
	case pk.Connect.ClientIdentifier != id.Name:
		h.b.log.Warn("client id differs from the certificate's identity: refused",
			"identity", id.Name, "client_id", pk.Connect.ClientIdentifier)
		_ = h.b.server.SendConnack(cl, packets.ErrClientIdentifierNotValid, false, nil)
		return packets.ErrClientIdentifierNotValid
	}
	cl.Properties.Username = []byte(id.Name)
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && !h.b.cfg.ACL.Allowed(id, cl.Properties.Will.TopicName, true) {
		h.b.log.Warn("will on a topic the client may not write: dropped", "identity", id.Name, "topic", cl.Properties.Will.TopicName)
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
		cl.Properties.Will = mqtt.Will{}
	}
	return nil
}

// OnConnectAuthenticate admits only connections that carry a verified certificate identity.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	id, ok := identity(cl)
	return ok && cl.ID == id.Name
}

// OnACLCheck applies brokerconf's rules. mochi calls it for publishes (write), for subscription filters and
// for every message delivered (read). Like Mosquitto with its dynamic security plugin, a subscription
// filter is granted only when every topic it matches is readable (and $share only to dispatch), and each
// delivered message is checked again.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	id, ok := identity(cl)
	if !ok {
		return false
	}
	if h.b.revoked(cl) {
		// Mosquitto's administrator deletes a revoked identity, which ends its session; here the CRL file
		// is the news, noticed at the session's next publish, subscription or delivery.
		h.b.log.Info("certificate revoked: session closed", "identity", id.Name)
		cl.Stop(packets.ErrNotAuthorized)
		return false
	}
	allowed := h.b.cfg.ACL.Allowed(id, topic, write)
	if !allowed && write {
		h.b.log.Info("publish denied by ACL", "identity", id.Name, "topic", topic)
	}
	return allowed
}
