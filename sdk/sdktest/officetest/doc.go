// Package officetest runs the office for the length of a test: a recording dispatch process
// (dispatch.Client with an archive as its Record, an outbox, and the fleet CA and truck certificates)
// against a test broker, with test timings. It is apart from sdktest because sdk/dispatch's own tests
// import sdktest.
//
//	of := officetest.Start(t, b, officetest.Options{Handle: h})
//	of.Outbox.Create(ctx, order)   // an order, until the truck confirms it
//	of.Stop()                      // before reading the archive file
package officetest
