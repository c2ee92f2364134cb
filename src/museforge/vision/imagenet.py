"""The 1000 ImageNet-1k classes in everyday English, and the groups that turn them into words.

ImageNet splits some things very finely (118 dog breeds, five domestic cats, ten kinds of car)
and has no class at all for others (people, horses in general, galaxies). A classifier unsure
between three cat breeds at 0.3 each is sure of one thing: "a cat". GROUPS sums such siblings;
the class indices are ImageNet's (the order every ImageNet-1k checkpoint uses).
"""

from __future__ import annotations

# One class per line, line i = class i. Names are the first synonym of each ImageNet synset,
# made unambiguous where two synsets share it ("crane (bird)" 134, "crane (machine)" 517).
_NAMES = """
tench
goldfish
great white shark
tiger shark
hammerhead shark
electric ray
stingray
rooster
hen
ostrich
brambling
goldfinch
house finch
junco
indigo bunting
robin
bulbul
jay
magpie
chickadee
dipper
kite (bird)
bald eagle
vulture
great grey owl
fire salamander
common newt
eft
spotted salamander
axolotl
bullfrog
tree frog
tailed frog
loggerhead turtle
leatherback turtle
mud turtle
terrapin
box turtle
banded gecko
iguana
anole
whiptail lizard
agama
frilled lizard
alligator lizard
Gila monster
green lizard
African chameleon
Komodo dragon
African crocodile
American alligator
triceratops
thunder snake
ringneck snake
hognose snake
green snake
king snake
garter snake
water snake
vine snake
night snake
boa constrictor
rock python
Indian cobra
green mamba
sea snake
horned viper
diamondback rattlesnake
sidewinder rattlesnake
trilobite
harvestman
scorpion
garden spider
barn spider
European garden spider
black widow
tarantula
wolf spider
tick
centipede
black grouse
ptarmigan
ruffed grouse
prairie chicken
peacock
quail
partridge
African grey parrot
macaw
cockatoo
lorikeet
coucal
bee-eater
hornbill
hummingbird
jacamar
toucan
drake
merganser
goose
black swan
tusker
echidna
platypus
wallaby
koala
wombat
jellyfish
sea anemone
brain coral
flatworm
nematode
conch
snail
slug
sea slug
chiton
chambered nautilus
Dungeness crab
rock crab
fiddler crab
king crab
American lobster
spiny lobster
crayfish
hermit crab
isopod
white stork
black stork
spoonbill
flamingo
little blue heron
egret
bittern
crane (bird)
limpkin
purple gallinule
coot
bustard
ruddy turnstone
dunlin
redshank
dowitcher
oystercatcher
pelican
king penguin
albatross
grey whale
killer whale
dugong
sea lion
Chihuahua
Japanese chin
Maltese dog
Pekingese
Shih Tzu
Blenheim spaniel
papillon
toy terrier
Rhodesian ridgeback
Afghan hound
basset hound
beagle
bloodhound
bluetick coonhound
black-and-tan coonhound
Treeing Walker coonhound
English foxhound
redbone coonhound
borzoi
Irish wolfhound
Italian greyhound
whippet
Ibizan hound
Norwegian elkhound
otterhound
Saluki
Scottish deerhound
Weimaraner
Staffordshire bull terrier
American Staffordshire terrier
Bedlington terrier
Border terrier
Kerry blue terrier
Irish terrier
Norfolk terrier
Norwich terrier
Yorkshire terrier
wire fox terrier
Lakeland terrier
Sealyham terrier
Airedale terrier
cairn terrier
Australian terrier
Dandie Dinmont terrier
Boston terrier
miniature schnauzer
giant schnauzer
standard schnauzer
Scottish terrier
Tibetan terrier
silky terrier
wheaten terrier
West Highland white terrier
Lhasa Apso
flat-coated retriever
curly-coated retriever
golden retriever
Labrador retriever
Chesapeake Bay retriever
German shorthaired pointer
vizsla
English setter
Irish setter
Gordon setter
Brittany spaniel
clumber spaniel
English springer spaniel
Welsh springer spaniel
cocker spaniel
Sussex spaniel
Irish water spaniel
kuvasz
schipperke
Groenendael
Malinois
briard
kelpie
komondor
Old English sheepdog
Shetland sheepdog
collie
Border collie
Bouvier des Flandres
Rottweiler
German shepherd
Dobermann
miniature pinscher
Greater Swiss mountain dog
Bernese mountain dog
Appenzeller sennenhund
Entlebucher sennenhund
boxer
bullmastiff
Tibetan mastiff
French bulldog
Great Dane
St. Bernard
husky
Alaskan malamute
Siberian husky
Dalmatian
affenpinscher
basenji
pug
Leonberger
Newfoundland dog
Great Pyrenees
Samoyed
Pomeranian
chow chow
keeshond
Brussels griffon
Pembroke Welsh corgi
Cardigan Welsh corgi
toy poodle
miniature poodle
standard poodle
Mexican hairless dog
grey wolf
white wolf
red wolf
coyote
dingo
dhole
African wild dog
hyena
red fox
kit fox
Arctic fox
grey fox
tabby cat
tiger cat
Persian cat
Siamese cat
Egyptian Mau
cougar
lynx
leopard
snow leopard
jaguar
lion
tiger
cheetah
brown bear
American black bear
polar bear
sloth bear
mongoose
meerkat
tiger beetle
ladybug
ground beetle
longhorn beetle
leaf beetle
dung beetle
rhinoceros beetle
weevil
fly
bee
ant
grasshopper
cricket
stick insect
cockroach
mantis
cicada
leafhopper
lacewing
dragonfly
damselfly
red admiral butterfly
ringlet butterfly
monarch butterfly
small white butterfly
sulphur butterfly
gossamer-winged butterfly
starfish
sea urchin
sea cucumber
cottontail rabbit
hare
Angora rabbit
hamster
porcupine
fox squirrel
marmot
beaver
guinea pig
sorrel horse
zebra
pig
wild boar
warthog
hippopotamus
ox
water buffalo
bison
ram
bighorn sheep
Alpine ibex
hartebeest
impala
gazelle
dromedary
llama
weasel
mink
polecat
black-footed ferret
otter
skunk
badger
armadillo
three-toed sloth
orangutan
gorilla
chimpanzee
gibbon
siamang
guenon
patas monkey
baboon
macaque
langur
colobus monkey
proboscis monkey
marmoset
capuchin monkey
howler monkey
titi monkey
spider monkey
squirrel monkey
ring-tailed lemur
indri
Asian elephant
African bush elephant
red panda
giant panda
snoek
eel
coho salmon
rock beauty
clownfish
sturgeon
garfish
lionfish
pufferfish
abacus
abaya
academic gown
accordion
acoustic guitar
aircraft carrier
airliner
airship
altar
ambulance
amphibious vehicle
analog clock
beehive
apron
trash can
assault rifle
backpack
bakery
balance beam
balloon
ballpoint pen
adhesive bandage
banjo
banister
barbell
barber chair
barbershop
barn
barometer
barrel
wheelbarrow
baseball
basketball
bassinet
bassoon
swimming cap
bath towel
bathtub
station wagon
lighthouse
beaker
bearskin hat
beer bottle
beer glass
bell tower
bib
tandem bicycle
bikini
ring binder
binoculars
birdhouse
boathouse
bobsleigh
bolo tie
bonnet
bookcase
bookshop
bottle cap
bow (archery)
bow tie
brass memorial plaque
bra
breakwater
breastplate
broom
bucket
buckle
bulletproof vest
high-speed train
butcher shop
taxi
cauldron
candle
cannon
canoe
can opener
cardigan
car mirror
carousel
tool kit
carton
car wheel
cash machine
cassette
cassette player
castle
catamaran
CD player
cello
mobile phone
chain
chain-link fence
chain mail
chainsaw
chest
chiffonier
wind chimes
china cabinet
Christmas stocking
church
cinema
cleaver
cliff dwelling
cloak
clog
cocktail shaker
coffee mug
coffeemaker
spiral
combination lock
computer keyboard
sweet shop
container ship
convertible
corkscrew
cornet
cowboy boot
cowboy hat
cradle
crane (machine)
crash helmet
crate
crib
slow cooker
croquet ball
crutch
cuirass
dam
desk
desktop computer
rotary dial telephone
diaper
digital clock
digital watch
dining table
dishcloth
dishwasher
disc brake
dock
dog sled
dome
doormat
drilling rig
drum
drumstick
dumbbell
Dutch oven
electric fan
electric guitar
electric locomotive
entertainment center
envelope
espresso machine
face powder
feather boa
filing cabinet
fireboat
fire engine
fire screen
flagpole
flute
folding chair
football helmet
forklift
fountain
fountain pen
four-poster bed
freight car
French horn
frying pan
fur coat
garbage truck
gas mask
petrol pump
goblet
go-kart
golf ball
golf cart
gondola
gong
gown
grand piano
greenhouse
radiator grille
grocery store
guillotine
hair clip
hair spray
half-track
hammer
hamper
hand dryer
hand-held computer
handkerchief
hard disk drive
harmonica
harp
combine harvester
hatchet
holster
home theatre
honeycomb
hook
hoop skirt
horizontal bar
horse-drawn cart
hourglass
iPod
clothes iron
jack-o'-lantern
jeans
jeep
T-shirt
jigsaw puzzle
rickshaw
joystick
kimono
knee pad
knot
lab coat
ladle
lampshade
laptop
lawn mower
lens cap
paper knife
library
lifeboat
lighter
limousine
ocean liner
lipstick
loafer
lotion
loudspeaker
magnifying glass
sawmill
compass
mailbag
mailbox
tights
swimsuit
manhole cover
maraca
marimba
mask
match
maypole
maze
measuring cup
medicine chest
megalith
microphone
microwave oven
military uniform
milk churn
minibus
miniskirt
minivan
missile
mitten
mixing bowl
mobile home
Model T
modem
monastery
monitor
moped
mortar
mortarboard
mosque
mosquito net
scooter
mountain bike
tent
computer mouse
mousetrap
moving van
muzzle
nail
neck brace
necklace
baby bottle
notebook computer
obelisk
oboe
ocarina
odometer
oil filter
pipe organ
oscilloscope
overskirt
bullock cart
oxygen mask
packet
paddle
paddle wheel
padlock
paintbrush
pyjamas
palace
pan flute
paper towel
parachute
parallel bars
park bench
parking meter
railway carriage
patio
payphone
pedestal
pencil case
pencil sharpener
perfume
Petri dish
photocopier
plectrum
pickelhaube
picket fence
pickup truck
pier
piggy bank
pill bottle
pillow
ping-pong ball
pinwheel
pirate ship
jug
carpenter's plane
planetarium
plastic bag
plate rack
plough
plunger
Polaroid camera
pole
police van
poncho
pool table
soda bottle
flowerpot
potter's wheel
power drill
prayer rug
printer
prison
projectile
projector
ice hockey puck
punching bag
purse
quill
quilt
race car
racket
radiator
radio
radio telescope
rain barrel
recreational vehicle
fishing reel
reflex camera
refrigerator
remote control
restaurant
revolver
rifle
rocking chair
rotisserie
eraser
rugby ball
ruler
running shoe
safe
safety pin
salt shaker
sandal
sarong
saxophone
scabbard
weighing scale
school bus
schooner
scoreboard
CRT screen
screw
screwdriver
seat belt
sewing machine
shield
shoe shop
shoji screen
shopping basket
shopping cart
shovel
shower cap
shower curtain
ski
balaclava
sleeping bag
slide rule
sliding door
slot machine
snorkel
snowmobile
snowplough
soap dispenser
football
sock
solar dish
sombrero
soup bowl
space bar
space heater
space shuttle
spatula
speedboat
spider web
spindle
sports car
spotlight
stage
steam locomotive
arch bridge
steelpan
stethoscope
stole
stone wall
stopwatch
stove
strainer
tram
stretcher
sofa
stupa
submarine
suit
sundial
sunglasses
sunglasses
sunscreen
suspension bridge
mop
sweatshirt
swimming trunks
swing
electrical switch
syringe
table lamp
tank
tape player
teapot
teddy bear
television
tennis ball
thatched roof
theatre curtain
thimble
threshing machine
throne
tile roof
toaster
tobacconist
toilet seat
torch
totem pole
tow truck
toy shop
tractor
lorry
tray
trench coat
tricycle
trimaran
tripod
triumphal arch
trolleybus
trombone
tub
turnstile
typewriter keyboard
umbrella
unicycle
upright piano
vacuum cleaner
vase
vault
velvet
vending machine
vestment
viaduct
violin
volleyball
waffle iron
wall clock
wallet
wardrobe
military aircraft
sink
washing machine
water bottle
water jug
water tower
whiskey jug
whistle
wig
window screen
window shade
Windsor tie
wine bottle
aeroplane wing
wok
wooden spoon
wool
split-rail fence
shipwreck
yawl
yurt
website
comic book
crossword
street sign
traffic light
dust jacket
menu
plate
guacamole
consommé
hot pot
trifle
ice cream
ice lolly
baguette
bagel
pretzel
cheeseburger
hot dog
mashed potato
cabbage
broccoli
cauliflower
courgette
spaghetti squash
acorn squash
butternut squash
cucumber
artichoke
bell pepper
cardoon
mushroom
Granny Smith apple
strawberry
orange
lemon
fig
pineapple
banana
jackfruit
cherimoya
pomegranate
hay
carbonara
chocolate syrup
dough
meatloaf
pizza
pot pie
burrito
red wine
espresso
cup
eggnog
alp
bubble
cliff
coral reef
geyser
lakeshore
promontory
sandbar
beach
valley
volcano
baseball player
bridegroom
scuba diver
rapeseed
daisy
yellow lady's slipper
corn
acorn
rose hip
horse chestnut seed
coral fungus
agaric
gyromitra
stinkhorn mushroom
earth star fungus
hen-of-the-woods
bolete
ear of corn
toilet paper
"""
CLASSES: tuple[str, ...] = tuple(_NAMES.strip("\n").split("\n"))
assert len(CLASSES) == 1000


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


# everyday word -> the ImageNet classes it covers (siblings the classifier often splits between)
GROUPS: dict[str, tuple[int, ...]] = {
    "shark": (2, 3, 4),
    "ray": (5, 6),
    "chicken": (7, 8),
    "songbird": _span(10, 16),
    "newt or salamander": _span(25, 29),
    "frog": (30, 31, 32),
    "turtle": _span(33, 37),
    "lizard": _span(38, 48),
    "crocodile": (49, 50),
    "snake": _span(52, 68),
    "spider": _span(72, 77),
    "game bird": (80, 81, 82, 83, 85, 86),
    "parrot": _span(87, 90),
    "duck": (97, 98),
    "elephant": (101, 385, 386),
    "crab": (118, 119, 120, 121, 125),
    "lobster": (122, 123, 124),
    "stork": (127, 128),
    "heron": (131, 132, 133),
    "wading bird": _span(139, 143),
    "whale": (147, 148),
    "dog": _span(151, 268),
    "wolf": _span(269, 271),
    "wild dog": _span(272, 275),
    "fox": _span(277, 280),
    "cat": _span(281, 285),
    "bear": _span(294, 297),
    "beetle": (300, *_span(302, 307)),
    "grasshopper": (311, 312),
    "dragonfly": (319, 320),
    "butterfly": _span(321, 326),
    "rabbit": _span(330, 332),
    "pig": _span(341, 343),
    "cattle": (345, 346, 347),
    "wild sheep or goat": _span(348, 350),
    "antelope": _span(351, 353),
    "weasel": _span(356, 359),
    "ape": _span(365, 369),
    "monkey": _span(370, 382),
    "lemur": (383, 384),
    "fish": (0, 1, 389, 390, 391, 392, 393, 394, 395, 396, 397),
    "car": (436, 468, 511, 609, 627, 656, 661, 717, 751, 817),
    "truck": (555, 569, 675, 734, 864, 867),
    "bus": (654, 779, 874),
    "train": (466, 547, 565, 705, 820, 829),
    "boat": (472, 484, 554, 576, 625, 694, 780, 814, 871, 914),
    "ship": (403, 510, 628, 724, 833, 913),
    "aeroplane": (404, 895, 908),
    "rocket": (657, 744, 812),
    "telephone": (487, 528, 707),
    "camera": (732, 759),
    "cup of coffee": (504, 967, 968),
    "computer": (527, 590, 620, 681),
    "screen": (664, 782, 851),
    "guitar": (402, 546),
    "piano": (579, 881),
    "clock": (409, 530, 892),
    "bicycle": (444, 671),
    "bridge": (821, 839, 888),
    "church": (442, 497),
    "swimwear": (445, 638, 639, 842),
    "sunglasses": (836, 837),
    "bottle": (440, 720, 737, 898, 907),
    "squash": _span(939, 942),
    "mushroom": (947, *_span(991, 997)),
}

# names that take no article ("some wool", not "a wool")
MASS_NOUNS = frozenset(
    {
        "sunglasses",
        "jeans",
        "wind chimes",
        "toilet paper",
        "wool",
        "hay",
        "corn",
        "guacamole",
        "consommé",
        "carbonara",
        "mashed potato",
        "chocolate syrup",
        "dough",
        "meatloaf",
        "broccoli",
        "cauliflower",
        "velvet",
        "pyjamas",
        "swimming trunks",
        "parallel bars",
        "binoculars",
        "red wine",
        "ice cream",
        "eggnog",
        "chain mail",
        "face powder",
        "hair spray",
        "lotion",
        "perfume",
        "sunscreen",
        "paper towel",
        "tights",
        "rapeseed",
        "cattle",
        "swimwear",
    }
)
