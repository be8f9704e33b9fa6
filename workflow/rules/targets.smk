rule records:
    input:
        record_targets(),


rule macs:
    input:
        macs_targets(),


rule search:
    input:
        search_targets(),
