/*
 * libFuzzer target for the model card parser (make fuzz): arbitrary bytes
 * as a CycloneDX ML-BOM. It may not crash; a card it accepts has a name,
 * one to BRD_MAX_LICENSES license ids and one to BRD_MAX_DATASETS datasets,
 * each with a name and a jurisdiction, and nothing that says TODO.
 */
#include <stdlib.h>
#include <string.h>

#include "citadel/border.h"
#include "../src/border/border_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct brd_card c;
    if (brd_card_parse((const char *)data, size, &c, NULL)) return 0;
    if (!c.name[0] || strstr(c.name, "TODO")) abort();
    if (c.n_licenses < 1 || c.n_licenses > BRD_MAX_LICENSES) abort();
    if (c.n_datasets < 1 || c.n_datasets > BRD_MAX_DATASETS) abort();
    for (int i = 0; i < c.n_licenses; i++)
        if (!c.licenses[i][0] || strstr(c.licenses[i], "TODO")) abort();
    for (int i = 0; i < c.n_datasets; i++)
        if (!c.datasets[i].name[0] || !c.datasets[i].jurisdiction[0] ||
            strstr(c.datasets[i].jurisdiction, "TODO"))
            abort();
    return 0;
}
