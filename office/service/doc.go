// Package service is the dispatch office process (`waybill dispatch run`): the verified consumer (a
// dispatch.Client whose Record is the office storage, so a PUBLISH is acknowledged to the broker and
// receipted to the truck only after it committed), the order re-sender of that storage, and an HTTP server
// with /healthz, /metrics and a JSON API for orders, trucks, tracks and proofs of delivery.
//
// # Basics
//
//	svc, err := service.New(service.Config{Store: st, Dispatch: dispatch.Config{Transport: ..., CA: ...},
//		Listen: "127.0.0.1:8470", Token: token})
//	err = svc.Run(ctx) // until ctx ends: the HTTP server stops first, then the sender, then the client
//
// # API
//
// Every /api path needs "Authorization: Bearer TOKEN"; /healthz does not (it says only whether the
// broker link is up and the storage answers). Errors are JSON {"error": "..."} with 400 (bad input),
// 401, 404 (no such order), 409 (exists with other content, cancelled, closed by the driver).
//
//	GET    /healthz                          200 ok / 503 with the reason
//	GET    /metrics                          Prometheus text
//	GET    /api/orders                       every order with its state
//	POST   /api/orders                       create {truck,id,recipient,address,lat,lon,radius_m,notes,expires}
//	GET    /api/orders/{truck}/{id}          one order and its history (the truck's events for it)
//	PUT    /api/orders/{truck}/{id}          revise (new address, destination, time window: expires)
//	DELETE /api/orders/{truck}/{id}?reason=  cancel
//	GET    /api/trucks                       online, last fix, fix age, queue depth, certificate days left
//	GET    /api/trucks/{truck}/track?from=&to=&format=geojson|gpx|csv   times RFC 3339; default the last 24 h
//	GET    /api/proofs?truck=&from=&to=      delivered and failed events with what was verified
//
// # Caveats
//
//   - The token is the only authentication; the server listens on loopback by default. Put a TLS proxy
//     in front of it (or keep it on loopback) before opening it to the office network.
//   - The web console and customer tracking links are not built yet.
package service
