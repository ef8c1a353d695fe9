"""Random container names, adjective_surname like Docker's."""
import secrets

_LEFT = ("admiring", "brave", "calm", "clever", "eager", "elastic", "focused", "gallant",
         "happy", "jolly", "keen", "lucid", "modest", "nifty", "quirky", "serene",
         "sharp", "stoic", "tender", "upbeat", "vibrant", "wizardly", "zealous", "bold")
_RIGHT = ("babbage", "curie", "darwin", "einstein", "euler", "fermi", "galileo", "hopper",
          "hypatia", "kepler", "lamarr", "lovelace", "meitner", "newton", "noether",
          "pasteur", "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath")


def generate(taken):
    for i in range(100):
        name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
        if i > 10:
            name += str(secrets.randbelow(100))
        if "/" + name not in taken:
            return name
    return "c_" + secrets.token_hex(6)
