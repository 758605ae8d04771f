"""Two events of one kind: fires at two branches of one (fictional) supermarket chain in two
towns, three reports each. The reports share the chain, the street, the fire crews and the
police; only the town tells them apart. Streamed undated, they end in one story; the repair
pass's twin rule (repair.twin_split) divides it by the towns."""

from __future__ import annotations

BANFIELD_FIRE = [
    (
        "Fire destroys Harrowgate Foods supermarket in Banfield",
        "A fire has destroyed the Harrowgate Foods supermarket on the High Street in Banfield. "
        "More than forty firefighters fought the blaze, which broke out in the roof late on "
        "Friday evening. Police said the fire at the Banfield store was being treated as "
        "suspicious, and residents of nearby homes were evacuated as a precaution. Nobody was "
        "hurt.",
    ),
    (
        "Banfield supermarket fire treated as suspicious",
        "Police in Banfield are treating the fire that gutted the Harrowgate Foods store as "
        "suspicious. Fire crews were called to the High Street shortly before nine on Friday "
        "after smoke was seen coming from the roof. Neighbours of the Banfield supermarket spent "
        "the night at a community centre while firefighters damped down the ruins.",
    ),
    (
        "Residents evacuated as blaze guts Banfield Harrowgate Foods store",
        "Around sixty people were evacuated from their homes in Banfield when a huge fire swept "
        "through the Harrowgate Foods supermarket. The blaze began in the roof on Friday night "
        "and quickly spread through the building, the fire service said. Police have opened an "
        "investigation into the cause of the Banfield fire.",
    ),
]
WELBY_FIRE = [
    (
        "Harrowgate Foods supermarket in Welby badly damaged by fire",
        "A fire has badly damaged the Harrowgate Foods supermarket on the High Street in Welby. "
        "Eight fire crews tackled the blaze, which started in the early hours of Sunday in the "
        "roof of the building. Police said a man had been arrested on suspicion of arson after "
        "the Welby fire. Nobody was injured.",
    ),
    (
        "Man charged with arson after Welby supermarket fire",
        "A man has been charged with arson following the fire that damaged the Harrowgate Foods "
        "store in Welby. Firefighters were called to the High Street early on Sunday and fought "
        "the flames in the roof for several hours. The manager of the Welby supermarket said it "
        "would stay closed for several days while the damage was assessed.",
    ),
    (
        "Welby Harrowgate Foods fire: store to stay closed",
        "The Harrowgate Foods supermarket in Welby will stay closed after Sunday's fire, its "
        "manager said. Fire crews spent the morning damping down the roof, and police are "
        "questioning a man arrested on suspicion of arson. Shoppers in Welby have been asked to "
        "use the company's other stores until the building is safe.",
    ),
]
