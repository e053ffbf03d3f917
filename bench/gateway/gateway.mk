# bench/gateway/gateway.mk -- builds the gateway benchmark's program (bench/gateway.sh runs it).
#
#   make -f Makefile -f bench/gateway/gateway.mk build/bench-gateway/gwbench
#
# Read after the top-level Makefile, whose gateway variables it reuses: gwbench links
# every gateway module (token signing, frame decoding, the replication client and the
# pgoutput decoder) the way the gateway's test programs do.

GWBENCH = build/bench-gateway/gwbench

$(GWBENCH): bench/gateway/gwbench.c $(GW_OBJS) test/gateway/wsclient.h $(wildcard gateway/*.h)
	@mkdir -p $(@D)
	$(CC) $(GW_CFLAGS) -Itest/gateway -o $@ $< $(GW_OBJS) $(GW_LDLIBS)

.PHONY: bench-gateway
bench-gateway: gateway/ferryd $(GWBENCH)
